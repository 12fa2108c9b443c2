/// The one error type of SliverNetwork: stage, what was attempted, errno.
public struct NetworkError: Error, CustomStringConvertible, Sendable {
    public var stage: String
    public var message: String
    public var errno: Int32

    public init(stage: String, _ message: String, errno: Int32) {
        self.stage = stage
        self.message = message
        self.errno = errno
    }

    public var description: String { "\(stage): \(message) (errno \(errno))" }
}
