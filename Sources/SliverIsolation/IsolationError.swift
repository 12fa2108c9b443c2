import SliverSystem

/// The one error type of SliverIsolation: a stable code, the stage that failed and a message that
/// names what was attempted (and the errno where the kernel refused).
public struct IsolationError: Error, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String { case invalidArgument, exhausted, kernel, helper }
        private let value: Value
        public static let invalidArgument = Code(value: .invalidArgument)
        /// No free ID range is left.
        public static let exhausted = Code(value: .exhausted)
        /// A syscall failed in the daemon.
        public static let kernel = Code(value: .kernel)
        /// The sliver-helper reported a failure (its stage and errno are in the message).
        public static let helper = Code(value: .helper)
        public var description: String { value.rawValue }
    }

    public var code: Code
    public var stage: String
    public var message: String

    public init(_ code: Code, stage: String, _ message: String) {
        self.code = code
        self.stage = stage
        self.message = message
    }

    init(_ error: SystemError) {
        self.init(.kernel, stage: error.stage, error.description)
    }

    public var description: String { "\(stage): \(message)" }
}
