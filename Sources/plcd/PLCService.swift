#if canImport(Glibc)
import Glibc
#endif
import PLCProtocol

/// The PLCAPI methods plcd serves, with PLCAPI's authentication rules and fault codes:
/// `GetSession` (BootAuth or SessionAuth), `GetSlivers` and `AuthCheck` (either).
struct PLCService {
    var data: PLCData
    /// session key -> node_id. A node holds at most one session: GetSession replaces it.
    private(set) var sessions: [String: Int] = [:]

    init(data: PLCData) { self.data = data }

    /// A PLCAPI fault to answer with: the protocol error type carrying the fault code, the
    /// detail as message (the fault string is built from both, as PLCAPI does).
    private static func fault(_ code: Int, _ detail: String? = nil) -> PLCProtocolError {
        PLCProtocolError(.fault, stage: "plcd", detail ?? "", faultCode: code)
    }

    /// Answers one call; never throws (every problem is a fault, as PLCAPI answers).
    mutating func handle(_ call: XMLRPCCall, now: Int) -> (response: XMLRPCResponse, log: String) {
        do throws(PLCProtocolError) {
            let allowed: ClosedRange<Int>
            switch call.method {
            case "GetSession", "AuthCheck": allowed = 1...1
            case "GetSlivers": allowed = 1...2
            default: throw Self.fault(PLCFault.invalidMethod, call.method)
            }
            guard allowed.contains(call.params.count) else {
                let expected = allowed.count == 1 ? "\(allowed.lowerBound)" : "\(allowed.lowerBound)-\(allowed.upperBound)"
                throw Self.fault(PLCFault.invalidArgumentCount, "Expected \(expected) arguments, got \(call.params.count)")
            }
            let node = try authenticate(call.params[0], rest: Array(call.params.dropFirst()))
            switch call.method {
            case "GetSession":
                if case .string(let existing)? = call.params[0]["session"] { return (.success(.string(existing)), "GetSession node \(node.node_id): same session") }
                sessions = sessions.filter { $0.value != node.node_id }
                var generator = SystemRandomNumberGenerator()
                let key = Base64.encode((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
                sessions[key] = node.node_id
                return (.success(.string(key)), "GetSession node \(node.node_id): new session")
            case "AuthCheck":
                return (.success(.int(1)), "AuthCheck node \(node.node_id)")
            default:
                let value = data.getSlivers(for: node, now: now)
                if data.faults?.mode == "wrong_types", case .structure(var members) = value {
                    members["slivers"] = .string("not a list")
                    return (.success(.structure(members)), "GetSlivers node \(node.node_id): wrong types (fault injection)")
                }
                let count = if case .array(let s)? = value["slivers"] { s.count } else { 0 }
                return (.success(value), "GetSlivers node \(node.node_id): \(count) slivers")
            }
        } catch {
            let code = error.faultCode ?? PLCFault.apiError
            let detail = error.message.isEmpty ? nil : error.message
            return (.fault(code: code, string: PLCFault.string(code, detail)), "\(call.method): fault \(code) \(error.message)")
        }
    }

    /// PLCAPI's Auth check: `hmac` recomputes the MAC over the parameters after the auth struct
    /// with the node's key; `session` looks the key up. Failures are fault 103, as in PLCAPI.
    private mutating func authenticate(_ auth: XMLRPCValue, rest: [XMLRPCValue]) throws(PLCProtocolError) -> PLCData.Node {
        guard case .structure = auth else { throw Self.fault(PLCFault.invalidArgument, "auth: expected a struct") }
        guard case .string(let method)? = auth["AuthMethod"] else { throw Self.fault(PLCFault.invalidArgument, "AuthMethod missing") }
        switch method {
        case "hmac":
            guard case .int(let nodeID)? = auth["node_id"] else { throw Self.fault(PLCFault.invalidArgument, "node_id: expected an int") }
            guard case .string(let value)? = auth["value"] else { throw Self.fault(PLCFault.invalidArgument, "value: expected a string") }
            guard let node = data.node(nodeID) else { throw Self.fault(PLCFault.authenticationFailure, "No such node") }
            let expected = NodeAuth.hmac(key: node.node_key, params: rest)
            guard constantTimeEqual(expected, value) else { throw Self.fault(PLCFault.authenticationFailure, "Call could not be authenticated") }
            return node
        case "session":
            guard case .string(let key)? = auth["session"] else { throw Self.fault(PLCFault.invalidArgument, "session: expected a string") }
            guard let nodeID = sessions[key] else { throw Self.fault(PLCFault.authenticationFailure, "No such session") }
            guard let node = data.node(nodeID) else {
                // PLCAPI deletes a session that fails authentication.
                sessions[key] = nil
                throw Self.fault(PLCFault.authenticationFailure, "No such node")
            }
            return node
        default:
            throw Self.fault(PLCFault.invalidArgument, "Invalid AuthMethod value: must be 'session' or 'hmac' (plcd serves nodes only)")
        }
    }

    private func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<x.count { diff |= x[i] ^ y[i] }
        return diff == 0
    }
}
