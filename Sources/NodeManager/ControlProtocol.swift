import Foundation
import SliverIsolation
import SliverResources

/// Version 1 of the control protocol (docs/control-protocol.md): newline-delimited JSON over the
/// daemon's Unix socket.
public enum ControlProtocol {
    public static let version = 1
    /// Longest request line the daemon reads.
    public static let maxLine = 1 << 20
}

public struct ControlRequest: Codable, Sendable {
    public var v: Int = ControlProtocol.version
    public var op: String
    public var name: String?
    public var image: String?
    public var path: String?
    public var attributes: [String: String]?
    public var start: Bool?
    public var argv: [String]?
    public var env: [String: String]?
    public var cwd: String?
    /// login: the command for `sh -c` (absent: a login shell); tty: allocate a terminal.
    public var command: String?
    public var tty: Bool?
    /// signal: one of INT, TERM, HUP, QUIT (numbers) for the running login/exec.
    public var signal: Int32?
    /// create, keys.set: SSH public keys of the slice.
    public var keys: [String]?
    /// ports.reserve / ports.release: "tcp" or "udp" and the port.
    public var proto: String?
    public var port: Int?
    /// address.assign: a pool address (absent = release).
    public var address: String?

    public init(op: String, name: String? = nil) {
        self.op = op
        self.name = name
    }
}

/// What `show` and `list` return for a sliver.
public struct SliverView: Codable, Sendable {
    public var name: String
    public var id: Int
    public var state: String
    public var image: String
    public var attributes: [String: String]
    public var idBase: UInt32
    public var idCount: UInt32
    public var initPid: Int32?
    public var createdAt: Double
    public var startedAt: Double?
    public var usage: ResourceUsage?
    public var poolAddress: String?
    /// The sliver's link (absent without networking).
    public var network: NetworkUsage?

    enum CodingKeys: String, CodingKey {
        case name, id, state, image, attributes, idBase = "id_base", idCount = "id_count", initPid = "init_pid"
        case createdAt = "created_at", startedAt = "started_at", usage, network
    }

    public init(_ record: SliverRecord, usage: ResourceUsage?, network: NetworkUsage? = nil) {
        name = record.name
        id = record.id
        // A running sliver with enabled=0 is frozen: say so.
        state = record.state == .running && !record.attributes.isEnabled ? "frozen" : record.state.rawValue
        image = record.image
        attributes = record.attributes.values
        idBase = record.idRange.base
        idCount = record.idRange.count
        initPid = record.initProcess?.pid
        createdAt = record.createdAt
        startedAt = record.startedAt
        self.usage = usage
        poolAddress = record.poolAddress
        self.network = network
    }
}

/// A sliver's link in `show`: what it sent in its current 24 h byte-cap period and its HTB
/// class (rate and ceil in bit/s as the kernel keeps them, while it runs).
public struct NetworkUsage: Codable, Sendable, Equatable {
    public var bytesSent: UInt64
    /// Seconds since the epoch; absent before the sliver's first class.
    public var periodStart: Double?
    /// Held below net_max_rate by the daily byte cap.
    public var capped: Bool
    public var rateBitsPerSecond: UInt64?
    public var ceilBitsPerSecond: UInt64?

    enum CodingKeys: String, CodingKey {
        case bytesSent = "bytes_sent", periodStart = "period_start", capped, rateBitsPerSecond = "rate_bps", ceilBitsPerSecond = "ceil_bps"
    }

    public init(bytesSent: UInt64, periodStart: Double?, capped: Bool, rateBitsPerSecond: UInt64? = nil, ceilBitsPerSecond: UInt64? = nil) {
        self.bytesSent = bytesSent
        self.periodStart = periodStart
        self.capped = capped
        self.rateBitsPerSecond = rateBitsPerSecond
        self.ceilBitsPerSecond = ceilBitsPerSecond
    }
}

public struct ErrorBody: Codable, Sendable {
    public var code: String
    public var message: String
    public var field: String?
}

/// A response as the client decodes it: the result stays raw JSON for the caller to decode.
public struct ControlResponse: Sendable {
    public var ok: Bool
    public var result: Data?
    public var error: ErrorBody?

    public static func decode(_ line: Data) throws -> ControlResponse {
        guard let object = try JSONSerialization.jsonObject(with: line) as? [String: Any] else {
            throw NodeError(.internal, "malformed response from sliverd")
        }
        var response = ControlResponse(ok: object["ok"] as? Bool ?? false)
        if let result = object["result"] {
            response.result = try JSONSerialization.data(withJSONObject: result, options: [.fragmentsAllowed])
        }
        if let error = object["error"] {
            response.error = try JSONDecoder().decode(ErrorBody.self, from: JSONSerialization.data(withJSONObject: error))
        }
        return response
    }
}

enum ResponseEncoding {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    private struct Success<R: Encodable>: Encodable {
        let ok = true
        let result: R
    }

    static func success<T: Encodable>(_ value: T) -> Data {
        (try? encoder.encode(Success(result: value))) ?? failure(NodeError(.internal, "cannot encode result"))
    }

    static func failure(_ error: NodeError) -> Data {
        struct Envelope: Encodable { let ok = false; let error: ErrorBody }
        let body = ErrorBody(code: error.code.rawValue, message: error.message, field: error.field)
        return (try? encoder.encode(Envelope(error: body))) ?? Data(#"{"ok":false}"#.utf8)
    }
}
