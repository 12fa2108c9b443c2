import SliverIsolation
import SliverResources
import SliverSystem

/// The one error type of NodeManager, and what the control API sends to clients: a stable code,
/// the field the problem is in (when the input was wrong) and a one-line message naming the value.
public struct NodeError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: String, Codable, Sendable {
        case invalidArgument = "invalid_argument"
        case notFound = "not_found"
        case alreadyExists = "already_exists"
        case failedPrecondition = "failed_precondition"
        case resourceExhausted = "resource_exhausted"
        case permissionDenied = "permission_denied"
        case unavailable
        case `internal`
        case unsupportedVersion = "unsupported_version"
    }

    public var code: Code
    public var message: String
    public var field: String?

    public init(_ code: Code, _ message: String, field: String? = nil) {
        self.code = code
        self.message = message
        self.field = field
    }

    public static func invalid(_ field: String, _ value: String, _ reason: String) -> NodeError {
        NodeError(.invalidArgument, "invalid \(field) \"\(value)\": \(reason)", field: field)
    }

    public var description: String { message }

    init(_ error: IsolationError) {
        self.init(error.code == .exhausted ? .resourceExhausted : .internal, error.description)
    }

    init(_ error: ResourceError) {
        self.init(.internal, error.description)
    }

    init(_ error: SystemError) {
        self.init(.internal, error.description)
    }
}
