#if canImport(Glibc)
import Glibc
#endif
import PLCProtocol
import SliverSystem

/// The JSON form of a fetched snapshot, used both on the pipe from the fetching child process
/// and for the persisted last good snapshot:
/// `{"ok": true, "snapshot": <GetSlivers struct>, "rejected": [{index, name, reason}]}` or
/// `{"ok": false, "code": "...", "error": "stage: message"}`.
/// `rejected` travels along because the GetSlivers struct cannot carry it, and a sliver whose
/// entry was rejected must still be protected from destruction after a restart.
enum SnapshotEnvelope {
    static func encode(_ snapshot: SliversSnapshot) -> [UInt8] {
        let rejected: [XMLRPCValue] = snapshot.rejected.map {
            .structure(["index": .int($0.index), "name": $0.name.map(XMLRPCValue.string) ?? .nil, "reason": .string($0.reason)])
        }
        return XMLRPCValue.structure(["ok": .bool(true), "snapshot": snapshot.xmlrpcValue, "rejected": .array(rejected)]).jsonBytes()
    }

    static func encode(_ error: NodeError) -> [UInt8] {
        XMLRPCValue.structure(["ok": .bool(false), "code": .string(error.code.rawValue), "error": .string(error.message)]).jsonBytes()
    }

    /// The snapshot, or the error the child reported.
    static func decode(_ bytes: [UInt8]) throws(NodeError) -> SliversSnapshot {
        let value: XMLRPCValue
        do { value = try XMLRPCValue(json: bytes) } catch { throw NodeError(error) }
        guard case .bool(let ok)? = value["ok"] else {
            throw NodeError(.internal, "snapshot envelope without \"ok\" (\(bytes.count) bytes)", field: "provisioning")
        }
        guard ok else {
            let code = if case .string(let c)? = value["code"] { NodeError.Code(rawValue: c) ?? .unavailable } else { NodeError.Code.unavailable }
            let message = if case .string(let m)? = value["error"] { m } else { "fetch failed" }
            throw NodeError(code, message, field: "provisioning")
        }
        var snapshot: SliversSnapshot
        do { snapshot = try SliversSnapshot(xmlrpc: value["snapshot"] ?? .nil) } catch { throw NodeError(error) }
        if case .array(let items)? = value["rejected"] {
            for item in items {
                guard case .int(let index)? = item["index"], case .string(let reason)? = item["reason"] else { continue }
                let name: String? = if case .string(let n)? = item["name"] { n } else { nil }
                snapshot.rejected.append(.init(index: index, name: name, reason: reason))
            }
        }
        return snapshot
    }
}

/// The last good snapshot on disk (`<state_dir>/provisioning/last-snapshot.json`, 0600, replaced
/// atomically): what the node applies at start, before (or without) any answer from PLC, so a
/// node that reboots during a PLC outage brings its slivers back and destroys nothing.
///
/// Rewritten only when the content changes; a newer timestamp alone does not rewrite it (a poll
/// of an unchanged PLC writes nothing). The stale-snapshot check after a restart therefore uses
/// the timestamp of the last *changed* snapshot, which is never newer than the last applied one.
struct SnapshotStore {
    let path: String

    init(stateDir: String) {
        path = ProvisioningPaths(stateDir: stateDir).lastSnapshot
    }

    func load() throws(NodeError) -> SliversSnapshot? {
        guard FileSystem.exists(path) else { return nil }
        let bytes: [UInt8]
        do { bytes = try FileSystem.readFile(path, limit: 256 << 20) } catch { throw NodeError(error) }
        do {
            return try SnapshotEnvelope.decode(bytes)
        } catch {
            throw NodeError(.internal, "unreadable last snapshot \(path): \(error.message)")
        }
    }

    func save(_ snapshot: SliversSnapshot) throws(NodeError) {
        do {
            try FileSystem.makeDirectories(FileSystem.parentDirectory(path), mode: 0o700)
            try FileSystem.writeAtomically(path, SnapshotEnvelope.encode(snapshot), mode: 0o600)
        } catch {
            throw NodeError(error)
        }
    }
}

extension SliversSnapshot {
    /// Equal apart from the timestamp: the same desired state.
    func sameContent(as other: SliversSnapshot) -> Bool {
        var a = self, b = other
        a.timestamp = 0
        b.timestamp = 0
        return a == b
    }
}
