import Foundation

/// A PLCAPI client for a node, as NodeManager uses PLC: GetSession once with the node key
/// (BootAuth), then every call with the session (SessionAuth). When PLC refuses the session
/// (fault 103: it was replaced by another GetSession, or PLC's database was reset), the client
/// obtains a new session with the node key and repeats the call once. A refused node key is
/// final: it is reported, never retried in a loop.
///
/// A value type: the caller owns it (one per poller) and may persist `session` between runs,
/// as NodeManager kept /etc/planetlab/session.
public struct PLCClient: Sendable {
    public let transport: any PLCTransport
    public let credentials: NodeCredentials
    /// The current session key, nil until the first call.
    public private(set) var session: String?
    /// How many times a session was obtained with the node key (for logs and tests).
    public private(set) var authentications = 0

    public init(transport: any PLCTransport, credentials: NodeCredentials, session: String? = nil) {
        self.transport = transport
        self.credentials = credentials
        self.session = session
    }

    /// `GetSlivers()` with the session: the node's desired state.
    public mutating func getSlivers() throws(PLCProtocolError) -> SliversSnapshot {
        try SliversSnapshot(xmlrpc: try call("GetSlivers", []))
    }

    /// `AuthCheck()` with the session: 1 when PLC accepts it.
    public mutating func authCheck() throws(PLCProtocolError) -> Bool {
        try call("AuthCheck", []) == .int(1)
    }

    /// Calls a method with session authentication, obtaining or renewing the session as needed.
    public mutating func call(_ method: String, _ params: [XMLRPCValue]) throws(PLCProtocolError) -> XMLRPCValue {
        var fresh = false
        if session == nil {
            try authenticate()
            fresh = true
        }
        do {
            return try rawCall(method, [NodeAuth.sessionAuth(session!)] + params)
        } catch where error.code == .authentication && !fresh {
            // The session was refused: PLCAPI deletes a refused session, so get a new one
            // with the node key and try once more.
            session = nil
            try authenticate()
            return try rawCall(method, [NodeAuth.sessionAuth(session!)] + params)
        }
    }

    /// `GetSession()` with BootAuth. Its parameter list after the auth struct is empty, so the
    /// MACed message is "[]".
    public mutating func authenticate() throws(PLCProtocolError) {
        let value: XMLRPCValue
        do {
            value = try callWithNodeKey("GetSession", [])
        } catch where error.code == .authentication {
            throw PLCProtocolError(.authentication, stage: "auth.hmac",
                                   "PLC refused the key of node \(credentials.nodeID): \(error.message)", faultCode: error.faultCode)
        }
        guard case .string(let key) = value, !key.isEmpty else {
            throw PLCProtocolError(.invalidShape, stage: "auth.session", "GetSession returned \(value.brief), expected a session key string")
        }
        session = key.trimmingCharacters(in: .whitespacesAndNewlines)
        authentications += 1
    }

    /// Calls a method with BootAuth (HMAC over the parameters).
    public func callWithNodeKey(_ method: String, _ params: [XMLRPCValue]) throws(PLCProtocolError) -> XMLRPCValue {
        try rawCall(method, [NodeAuth.hmacAuth(credentials, params: params)] + params)
    }

    /// One XML-RPC exchange. HTTP errors and non-XML answers are reported with what came back;
    /// a fault becomes `.fault`, or `.authentication` for PLCAPI's 103.
    public func rawCall(_ method: String, _ params: [XMLRPCValue]) throws(PLCProtocolError) -> XMLRPCValue {
        let stage = "plc.\(method)"
        let body = try XMLRPCEncoder.encode(XMLRPCCall(method: method, params: params))
        let response = try transport.post(body)
        guard response.status == 200 else {
            let title = HTMLSniffer.title(of: response.body)
            let detail = title.map { $0.isEmpty ? " (an HTML page)" : " (HTML page \"\($0)\")" }
                ?? (response.body.isEmpty ? "" : ": \"\(String(decoding: response.body.prefix(80), as: UTF8.self))\"")
            throw PLCProtocolError(.http, stage: stage, "HTTP \(response.status) \(response.reason)".trimmingCharacters(in: .whitespaces) + detail)
        }
        let decoded: XMLRPCResponse
        do {
            decoded = try XMLRPCDecoder.decodeResponse(response.body)
        } catch {
            var error = error
            error.stage = stage
            if !response.contentType.isEmpty && !response.contentType.contains("xml") {
                error.message += " [Content-Type \(response.contentType)]"
            }
            throw error
        }
        switch decoded {
        case .success(let value):
            return value
        case .fault(let code, let string):
            throw PLCProtocolError(code == PLCFault.authenticationFailure ? .authentication : .fault, stage: stage,
                                   "fault \(code): \(string)", faultCode: code)
        }
    }
}
