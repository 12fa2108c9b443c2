import PLCProtocol
import SliverSystem

/// Where the node's desired state comes from: something that produces a GetSlivers snapshot.
/// A fetch may block (network, deadlines): the daemon never calls it on its event loop but in a
/// child process (`sliverd --fetch-snapshot`, see SnapshotFetch); tests call it directly.
public protocol DesiredStateSource {
    /// For logs: "file /etc/sliverd/slivers.json", "plc https://plc.example.org/PLCAPI/".
    var summary: String { get }
    func fetch() throws(NodeError) -> SliversSnapshot
}

extension NodeError {
    /// PLCProtocol's errors at the module boundary: the stage and message stay readable
    /// ("auth.hmac: PLC refused the key of node 12: ...").
    init(_ error: PLCProtocolError) {
        let code: Code = switch error.code {
        case .credentials, .invalidArgument: .invalidArgument
        case .authentication: .permissionDenied
        default: .unavailable
        }
        self.init(code, error.description, field: "provisioning")
    }
}

/// A GetSlivers-shaped file (docs/plc.md "The GetSlivers snapshot"): the embedded default of a
/// standalone node, and what an operator edits by hand. TOML when the name ends in `.toml`,
/// JSON otherwise; both decode through the same mapping.
public struct FileSource: DesiredStateSource {
    public let path: String

    public init(path: String) { self.path = path }

    public var summary: String { "file \(path)" }

    public func fetch() throws(NodeError) -> SliversSnapshot {
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.readFile(path, limit: 64 << 20)
        } catch {
            throw NodeError(.unavailable, "cannot read the provisioning file: \(error)", field: "provisioning.file")
        }
        if path.hasSuffix(".toml") {
            do {
                return try SliversSnapshot(toml: String(decoding: bytes, as: UTF8.self))
            } catch {
                throw NodeError(.invalidArgument, "\(path): \(error.message)", field: "provisioning.file")
            }
        }
        do {
            return try SliversSnapshot(json: bytes)
        } catch {
            throw NodeError(.invalidArgument, "\(path): \(error.description)", field: "provisioning.file")
        }
    }
}

/// The sources a configuration names.
public enum DesiredStateSources {
    public static func make(_ settings: ProvisioningSettings, stateDir: String) throws(NodeError) -> any DesiredStateSource {
        switch settings.source {
        case .file: return FileSource(path: settings.file)
        case .plc: return try PLCSource(settings: settings, stateDir: stateDir)
        }
    }
}
