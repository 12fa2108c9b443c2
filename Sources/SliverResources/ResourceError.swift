import SliverSystem

/// The one error type of SliverResources: a code, the stage that failed and what was attempted.
public struct ResourceError: Error, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String { case unavailable, kernel, busy, invalidArgument }
        private let value: Value
        /// The node lacks a controller or hierarchy the driver needs.
        public static let unavailable = Code(value: .unavailable)
        public static let kernel = Code(value: .kernel)
        /// Processes did not leave a cgroup in time.
        public static let busy = Code(value: .busy)
        public static let invalidArgument = Code(value: .invalidArgument)
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
