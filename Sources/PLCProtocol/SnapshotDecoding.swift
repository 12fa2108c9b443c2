import Foundation

extension SliversSnapshot {
    /// Decodes the struct GetSlivers returns. Required: `timestamp`, `slivers`; per sliver
    /// `name`, `slice_id`, `expires`. Everything else has PLCAPI's default when absent
    /// (instantiation "plc-instantiated", empty lists). Wrong types are errors naming the path.
    public init(xmlrpc value: XMLRPCValue) throws(PLCProtocolError) {
        let top = try Fields(value, path: "GetSlivers")
        self.init(timestamp: try top.int("timestamp"))
        nodeID = try top.optionalInt("node_id")
        hostname = try top.optionalString("hostname")
        for (i, item) in try top.list("slivers", required: true).enumerated() {
            do throws(PLCProtocolError) {
                slivers.append(try Self.sliver(item, path: "slivers[\(i)]"))
            } catch {
                let name: String? = if case .string(let n)? = item["name"] { n } else { nil }
                rejected.append(Rejected(index: i, name: name, reason: error.message))
            }
        }
        for (i, item) in try top.list("initscripts").enumerated() {
            let f = try Fields(item, path: "initscripts[\(i)]")
            initscripts.append(InitScript(initscriptID: try f.optionalInt("initscript_id"), name: try f.string("name"),
                                          enabled: try f.optionalBool("enabled") ?? true, script: try f.string("script")))
        }
        for (i, item) in try top.list("accounts").enumerated() {
            let f = try Fields(item, path: "accounts[\(i)]")
            var keys: [String] = []
            // PLCAPI sends plain key strings here although its schema declares key structs:
            // accept both.
            for (j, key) in try f.list("keys").enumerated() {
                switch key {
                case .string(let s): keys.append(s)
                case .structure: keys.append(try Fields(key, path: "accounts[\(i)].keys[\(j)]").string("key"))
                default: throw Fields.wrongType("accounts[\(i)].keys[\(j)]", "a string", key)
                }
            }
            accounts.append(Account(name: try f.string("name"), keys: keys))
        }
        // `networks` is the pre-5.0 name of `interfaces`; NodeManager still reads it.
        let interfaceKey = top.has("interfaces") || !top.has("networks") ? "interfaces" : "networks"
        for (i, item) in try top.list(interfaceKey).enumerated() {
            let f = try Fields(item, path: "\(interfaceKey)[\(i)]")
            var interface = Interface()
            interface.interfaceID = try f.optionalInt("interface_id")
            interface.isPrimary = try f.optionalBool("is_primary")
            interface.method = try f.optionalString("method")
            interface.type = try f.optionalString("type")
            interface.ip = try f.optionalString("ip")
            interface.mac = try f.optionalString("mac")
            interface.gateway = try f.optionalString("gateway")
            interface.network = try f.optionalString("network")
            interface.broadcast = try f.optionalString("broadcast")
            interface.netmask = try f.optionalString("netmask")
            interface.dns1 = try f.optionalString("dns1")
            interface.dns2 = try f.optionalString("dns2")
            interface.bwlimit = try f.optionalInt("bwlimit")
            interface.hostname = try f.optionalString("hostname")
            interfaces.append(interface)
        }
    }

    private static func sliver(_ value: XMLRPCValue, path: String) throws(PLCProtocolError) -> Sliver {
        let f = try Fields(value, path: path)
        var sliver = Sliver(name: try f.string("name"), sliceID: try f.int("slice_id"),
                            instantiation: try f.optionalString("instantiation") ?? "plc-instantiated",
                            expires: try f.int("expires"), family: try f.optionalString("GetSliceFamily"))
        for (j, key) in try f.list("keys").enumerated() {
            let k = try Fields(key, path: "\(path).keys[\(j)]")
            sliver.keys.append(Key(keyType: try k.optionalString("key_type") ?? "ssh", key: try k.string("key")))
        }
        for (j, attribute) in try f.list("attributes").enumerated() {
            let a = try Fields(attribute, path: "\(path).attributes[\(j)]")
            // Old PLCAPI (4.x) named the tag `name`; 5.x `tagname`.
            let tag = a.has("tagname") || !a.has("name") ? try a.string("tagname") : try a.string("name")
            sliver.attributes.append(Attribute(tag, try a.string("value")))
        }
        return sliver
    }

    /// Decodes a GetSlivers-shaped JSON document (the "file" source).
    public init(json bytes: [UInt8]) throws(PLCProtocolError) {
        try self.init(xmlrpc: try XMLRPCValue(json: bytes))
    }

    /// The snapshot as a GetSlivers struct (what plcd serves, and what JSON persistence writes).
    public var xmlrpcValue: XMLRPCValue {
        func opt<T>(_ v: T?, _ wrap: (T) -> XMLRPCValue) -> XMLRPCValue { v.map(wrap) ?? .nil }
        var top: [String: XMLRPCValue] = [
            "timestamp": .int(timestamp),
            "node_id": opt(nodeID, XMLRPCValue.int),
            "hostname": opt(hostname, XMLRPCValue.string),
            "slivers": .array(slivers.map { s in
                var members: [String: XMLRPCValue] = [
                    "name": .string(s.name), "slice_id": .int(s.sliceID), "instantiation": .string(s.instantiation),
                    "expires": .int(s.expires),
                    "keys": .array(s.keys.map { .structure(["key_type": .string($0.keyType), "key": .string($0.key)]) }),
                    "attributes": .array(s.attributes.map { .structure(["tagname": .string($0.tagname), "value": .string($0.value)]) }),
                ]
                if let family = s.family { members["GetSliceFamily"] = .string(family) }
                return .structure(members)
            }),
            "initscripts": .array(initscripts.map {
                .structure(["initscript_id": opt($0.initscriptID, XMLRPCValue.int), "name": .string($0.name),
                            "enabled": .bool($0.enabled), "script": .string($0.script)])
            }),
            "accounts": .array(accounts.map { .structure(["name": .string($0.name), "keys": .array($0.keys.map(XMLRPCValue.string))]) }),
            "interfaces": .array(interfaces.map { i in
                .structure([
                    "interface_id": opt(i.interfaceID, XMLRPCValue.int), "is_primary": opt(i.isPrimary, XMLRPCValue.bool),
                    "method": opt(i.method, XMLRPCValue.string), "type": opt(i.type, XMLRPCValue.string),
                    "ip": opt(i.ip, XMLRPCValue.string), "mac": opt(i.mac, XMLRPCValue.string),
                    "gateway": opt(i.gateway, XMLRPCValue.string), "network": opt(i.network, XMLRPCValue.string),
                    "broadcast": opt(i.broadcast, XMLRPCValue.string), "netmask": opt(i.netmask, XMLRPCValue.string),
                    "dns1": opt(i.dns1, XMLRPCValue.string), "dns2": opt(i.dns2, XMLRPCValue.string),
                    "bwlimit": opt(i.bwlimit, XMLRPCValue.int), "hostname": opt(i.hostname, XMLRPCValue.string),
                ])
            }),
        ]
        if nodeID == nil { top["node_id"] = nil }
        if hostname == nil { top["hostname"] = nil }
        return .structure(top)
    }
}

/// Typed access to the members of a struct, with errors that name the path of the member.
struct Fields {
    let members: [String: XMLRPCValue]
    let path: String

    init(_ value: XMLRPCValue, path: String) throws(PLCProtocolError) {
        guard case .structure(let members) = value else { throw Fields.wrongType(path, "a struct", value) }
        self.members = members
        self.path = path
    }

    static func wrongType(_ path: String, _ expected: String, _ got: XMLRPCValue) -> PLCProtocolError {
        PLCProtocolError(.invalidShape, stage: "snapshot.decode", "\(path): expected \(expected), got \(got.brief)")
    }

    func has(_ key: String) -> Bool { members[key] != nil }

    private func required(_ key: String) throws(PLCProtocolError) -> XMLRPCValue {
        guard let value = members[key], value != .nil else {
            throw PLCProtocolError(.missingField, stage: "snapshot.decode", "\(path).\(key): missing (required)")
        }
        return value
    }

    func int(_ key: String) throws(PLCProtocolError) -> Int {
        let value = try required(key)
        guard case .int(let n) = value else { throw Fields.wrongType("\(path).\(key)", "an int", value) }
        return n
    }

    func string(_ key: String) throws(PLCProtocolError) -> String {
        let value = try required(key)
        guard case .string(let s) = value else { throw Fields.wrongType("\(path).\(key)", "a string", value) }
        return s
    }

    func optionalInt(_ key: String) throws(PLCProtocolError) -> Int? {
        guard let value = members[key], value != .nil else { return nil }
        guard case .int(let n) = value else { throw Fields.wrongType("\(path).\(key)", "an int", value) }
        return n
    }

    func optionalString(_ key: String) throws(PLCProtocolError) -> String? {
        guard let value = members[key], value != .nil else { return nil }
        guard case .string(let s) = value else { throw Fields.wrongType("\(path).\(key)", "a string", value) }
        return s
    }

    func optionalBool(_ key: String) throws(PLCProtocolError) -> Bool? {
        guard let value = members[key], value != .nil else { return nil }
        guard case .bool(let b) = value else { throw Fields.wrongType("\(path).\(key)", "a boolean", value) }
        return b
    }

    /// A list member; absent or nil is an empty list unless required.
    func list(_ key: String, required isRequired: Bool = false) throws(PLCProtocolError) -> [XMLRPCValue] {
        guard let value = members[key], value != .nil else {
            if isRequired { throw PLCProtocolError(.missingField, stage: "snapshot.decode", "\(path).\(key): missing (required)") }
            return []
        }
        guard case .array(let items) = value else { throw Fields.wrongType("\(path).\(key)", "an array", value) }
        return items
    }
}
