import Foundation
import PLCProtocol
import SliverSystem

/// plcd's database: one JSON file (docs/plc.md "plcd data file"), re-read when it changes.
struct PLCData: Decodable, Sendable {
    struct Node: Decodable, Sendable {
        var node_id: Int
        var node_key: String
        var hostname: String
        var hrn: String?
        var groups: [String]?
        /// Interface records, passed through as given (GetSlivers `interfaces` shape).
        var interfaces: [XMLRPCValue]?
    }

    struct Key: Decodable, Sendable {
        var key_type: String?
        var key: String
    }

    struct Tag: Decodable, Sendable {
        var tagname: String
        var value: String
        /// Set = a sliver attribute for that node only, which takes precedence over the slice's.
        var node_id: Int?
    }

    struct Slice: Decodable, Sendable {
        var name: String
        var slice_id: Int
        var instantiation: String?
        var expires: Int?
        var nodes: [Int]?
        var keys: [Key]?
        var attributes: [Tag]?
    }

    struct InitScript: Decodable, Sendable {
        var initscript_id: Int?
        var name: String
        var enabled: Bool?
        var script: String
    }

    struct Account: Decodable, Sendable {
        var name: String
        var keys: [String]
    }

    struct Flavour: Decodable, Sendable {
        var pldistro: String?
        var fcdistro: String?
        var arch: String?
    }

    /// Test hooks: make GetSlivers misbehave the way a broken PLC or proxy does.
    struct Faults: Decodable, Sendable {
        /// "none", "html" (HTTP 502 + an HTML page), "html200" (an HTML page with status 200),
        /// "truncated" (the XML cut in half), "wrong_types" (slivers is a string), "close" (no answer).
        var mode: String?
        /// Seconds to wait before answering (the whole server waits: it is single-threaded).
        var delay_s: Double?
    }

    var timestamp: Int?
    var flavour: Flavour?
    var nodes: [Node]
    var slices: [Slice]?
    var initscripts: [InitScript]?
    var accounts: [Account]?
    var faults: Faults?

    static func load(_ path: String) throws(PLCProtocolError) -> PLCData {
        let data: Data
        do {
            data = Data(try FileSystem.readFile(path))
        } catch {
            throw PLCProtocolError(.invalidArgument, stage: "plcd.data", "\(error)")
        }
        let decoded: PLCData
        do {
            decoded = try JSONDecoder().decode(PLCData.self, from: data)
        } catch let error as DecodingError {
            throw PLCProtocolError(.invalidShape, stage: "plcd.data", "\(path): \(describe(error))")
        } catch {
            throw PLCProtocolError(.malformed, stage: "plcd.data", "\(path): \(error)")
        }
        try decoded.validate(path)
        return decoded
    }

    private func validate(_ path: String) throws(PLCProtocolError) {
        var ids = Set<Int>()
        for node in nodes {
            guard ids.insert(node.node_id).inserted else {
                throw PLCProtocolError(.invalidArgument, stage: "plcd.data", "\(path): node_id \(node.node_id) appears twice")
            }
            guard !node.node_key.isEmpty else {
                throw PLCProtocolError(.invalidArgument, stage: "plcd.data", "\(path): node \(node.node_id) has an empty node_key")
            }
        }
        var names = Set<String>()
        for slice in slices ?? [] where !names.insert(slice.name).inserted {
            throw PLCProtocolError(.invalidArgument, stage: "plcd.data", "\(path): slice \(slice.name) appears twice")
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ codingPath: [any CodingKey]) -> String {
            var out = ""
            for key in codingPath {
                if let i = key.intValue { out += "[\(i)]" } else { out += (out.isEmpty ? "" : ".") + key.stringValue }
            }
            return out.isEmpty ? "top level" : out
        }
        switch error {
        case .keyNotFound(let key, let context): return "\(path(context.codingPath + [key])): missing (required)"
        case .typeMismatch(let type, let context): return "\(path(context.codingPath)): expected \(type)"
        case .valueNotFound(let type, let context): return "\(path(context.codingPath)): expected \(type), got null"
        case .dataCorrupted(let context): return "\(path(context.codingPath)): \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    func node(_ id: Int) -> Node? { nodes.first { $0.node_id == id } }

    /// GetSlivers for a node, shaped as PLCAPI's (plcapi-node.md §3.1): system slices, every
    /// delegated / nm-controller slice, and the slices bound to the node; sliver attributes
    /// (node_id set to this node) win over the slice's for the same tag name.
    func getSlivers(for node: Node, now: Int) -> XMLRPCValue {
        var slivers: [SliversSnapshot.Sliver] = []
        for slice in slices ?? [] {
            let instantiation = slice.instantiation ?? "plc-instantiated"
            let tags = (slice.attributes ?? []).filter { $0.node_id == nil || $0.node_id == node.node_id }
            let isSystem = tags.contains { $0.tagname == "system" && $0.value == "1" }
            let bound = slice.nodes?.contains(node.node_id) ?? false
            guard bound || isSystem || instantiation == "delegated" || instantiation == "nm-controller" else { continue }
            let overridden = Set(tags.filter { $0.node_id != nil }.map(\.tagname))
            let effective = tags.filter { $0.node_id != nil || !overridden.contains($0.tagname) }
            func tag(_ name: String) -> String? { effective.last { $0.tagname == name }?.value }
            // GetSliceFamily: vref wins over pldistro; defaults from the flavour.
            let family = [tag("vref") ?? tag("pldistro") ?? flavour?.pldistro ?? "lxc",
                          tag("fcdistro") ?? flavour?.fcdistro ?? "f20",
                          tag("arch") ?? flavour?.arch ?? "x86_64"].joined(separator: "-")
            slivers.append(SliversSnapshot.Sliver(
                name: slice.name, sliceID: slice.slice_id, instantiation: instantiation,
                // PLCAPI clamps to 2^31-1 (the XML-RPC int); default expiry is two weeks.
                expires: min(slice.expires ?? now + 14 * 86400, Int(Int32.max)),
                keys: (slice.keys ?? []).map { SliversSnapshot.Key(keyType: $0.key_type ?? "ssh", key: $0.key) },
                attributes: effective.map { SliversSnapshot.Attribute($0.tagname, $0.value) },
                family: family))
        }
        let snapshot = SliversSnapshot(
            timestamp: timestamp ?? now, nodeID: node.node_id, hostname: node.hostname, slivers: slivers,
            initscripts: (initscripts ?? []).filter { $0.enabled ?? true }.map {
                SliversSnapshot.InitScript(initscriptID: $0.initscript_id, name: $0.name, enabled: true, script: $0.script)
            },
            accounts: (accounts ?? []).map { SliversSnapshot.Account(name: $0.name, keys: $0.keys) })
        guard case .structure(var members) = snapshot.xmlrpcValue else { return snapshot.xmlrpcValue }
        members["interfaces"] = .array(node.interfaces ?? [])
        members["groups"] = .array((node.groups ?? []).map(XMLRPCValue.string))
        members["conf_files"] = .array([])
        members["xmpp"] = .structure(["server": .nil])
        members["hrn"] = .string(node.hrn ?? "plc." + (node.hostname.split(separator: ".").first.map(String.init) ?? node.hostname))
        members["reservation_policy"] = .string("none")
        members["leases"] = .nil
        members["lease_granularity"] = .int(3600)
        return .structure(members)
    }
}
