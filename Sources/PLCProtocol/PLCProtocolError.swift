/// The one error type of PLCProtocol: what kind of problem (`code`), at which step of a PLC
/// exchange it happened (`stage`, e.g. "xmlrpc.decode", "http.connect", "auth.session"), and a
/// one-line message that names the offending value or path.
public struct PLCProtocolError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: String, Sendable {
        /// The bytes are not well-formed XML / JSON / HTTP.
        case malformed
        /// Well-formed, but not the XML-RPC or GetSlivers shape: wrong element, wrong type.
        case invalidShape = "invalid_shape"
        /// A required field is absent.
        case missingField = "missing_field"
        /// The server answered with an XML-RPC fault (see `faultCode`).
        case fault
        /// PLC refused the node's credentials or session.
        case authentication
        /// The node credentials file is missing, unsafe or unparsable.
        case credentials
        /// Connecting, sending or receiving failed.
        case transport
        /// No complete answer within the time limit.
        case timeout
        /// An HTTP status other than 200, or a body that is not XML-RPC (an HTML error page).
        case http
        /// A value we were asked to send cannot be expressed (e.g. a control character in XML).
        case invalidArgument = "invalid_argument"
    }

    public var code: Code
    public var stage: String
    public var message: String
    /// The XML-RPC faultCode when `code` is `.fault` or `.authentication` from a fault.
    public var faultCode: Int?

    public init(_ code: Code, stage: String, _ message: String, faultCode: Int? = nil) {
        self.code = code
        self.stage = stage
        self.message = message
        self.faultCode = faultCode
    }

    public var description: String { "\(stage): \(message)" }
}

/// PLCAPI's fault codes (PLC/Faults.py). A fault's string is the class's text, then ": " and the
/// detail, e.g. "Failed to authenticate call: Call could not be authenticated".
public enum PLCFault {
    public static let invalidMethod = 100
    public static let invalidArgumentCount = 101
    public static let invalidArgument = 102
    public static let authenticationFailure = 103
    public static let databaseError = 106
    public static let permissionDenied = 108
    public static let notImplemented = 109
    public static let apiError = 111

    /// The fault string PLCAPI builds for a code and an optional detail. Two classes word it
    /// differently: 100 is "Invalid method NAME", 101 "Expected N arguments, got M" (the detail).
    public static func string(_ code: Int, _ detail: String? = nil) -> String {
        let base: String
        switch code {
        case invalidMethod: return "Invalid method " + (detail ?? "")
        case invalidArgumentCount: return detail ?? "Invalid argument count"
        case invalidArgument: base = "Invalid argument"
        case authenticationFailure: base = "Failed to authenticate call"
        case databaseError: base = "Database error"
        case permissionDenied: base = "Permission denied"
        case notImplemented: base = "Not fully implemented"
        default: base = "Internal API error"
        }
        guard let detail, !detail.isEmpty else { return base }
        return base + ": " + detail
    }
}
