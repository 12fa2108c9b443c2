/// What PLC wants on this node: the typed part of a GetSlivers answer (plcapi-node.md §3.1) that
/// the reconciler uses. Decoded from the XML-RPC struct PLC returns, or from the same shape in
/// JSON (the "file" source and the persisted last good snapshot). Unknown fields are ignored.
public struct SliversSnapshot: Sendable, Equatable {
    /// PLC's clock at the call, seconds since the epoch: a snapshot older than the last applied
    /// one is stale.
    public var timestamp: Int
    public var nodeID: Int?
    public var hostname: String?
    public var slivers: [Sliver]
    public var initscripts: [InitScript]
    public var accounts: [Account]
    public var interfaces: [Interface]
    /// Sliver entries that could not be decoded: reported, left out of `slivers`, so one bad entry
    /// does not discard the rest. A reconciler must not destroy a sliver named here.
    public var rejected: [Rejected]

    public init(timestamp: Int, nodeID: Int? = nil, hostname: String? = nil, slivers: [Sliver] = [],
                initscripts: [InitScript] = [], accounts: [Account] = [], interfaces: [Interface] = [], rejected: [Rejected] = []) {
        self.timestamp = timestamp
        self.nodeID = nodeID
        self.hostname = hostname
        self.slivers = slivers
        self.initscripts = initscripts
        self.accounts = accounts
        self.interfaces = interfaces
        self.rejected = rejected
    }

    public struct Sliver: Sendable, Equatable {
        public var name: String
        public var sliceID: Int
        /// plc-instantiated | delegated | nm-controller | not-instantiated.
        public var instantiation: String
        /// Seconds since the epoch (PLCAPI clamps it to 2^31-1).
        public var expires: Int
        public var keys: [Key]
        /// Slice tags in PLCAPI's precedence already applied; a tag may repeat (vsys).
        public var attributes: [Attribute]
        /// GetSliceFamily, e.g. "lxc-f20-x86_64", when PLC sent it.
        public var family: String?

        public init(name: String, sliceID: Int, instantiation: String = "plc-instantiated", expires: Int,
                    keys: [Key] = [], attributes: [Attribute] = [], family: String? = nil) {
            self.name = name
            self.sliceID = sliceID
            self.instantiation = instantiation
            self.expires = expires
            self.keys = keys
            self.attributes = attributes
            self.family = family
        }

        /// The last value of a tag, or nil.
        public func attribute(_ tagname: String) -> String? { attributes.last { $0.tagname == tagname }?.value }
    }

    public struct Key: Sendable, Equatable {
        public var keyType: String
        public var key: String
        public init(keyType: String = "ssh", key: String) {
            self.keyType = keyType
            self.key = key
        }
    }

    public struct Attribute: Sendable, Equatable {
        public var tagname: String
        public var value: String
        public init(_ tagname: String, _ value: String) {
            self.tagname = tagname
            self.value = value
        }
    }

    public struct InitScript: Sendable, Equatable {
        public var initscriptID: Int?
        public var name: String
        public var enabled: Bool
        public var script: String
        public init(initscriptID: Int? = nil, name: String, enabled: Bool = true, script: String) {
            self.initscriptID = initscriptID
            self.name = name
            self.enabled = enabled
            self.script = script
        }
    }

    /// `root` and `site_admin` host accounts with their ssh keys.
    public struct Account: Sendable, Equatable {
        public var name: String
        public var keys: [String]
        public init(name: String, keys: [String]) {
            self.name = name
            self.keys = keys
        }
    }

    /// The node's interfaces as PLC records them; every field may be null.
    public struct Interface: Sendable, Equatable {
        public var interfaceID: Int?
        public var isPrimary: Bool?
        public var method: String?
        public var type: String?
        public var ip: String?
        public var mac: String?
        public var gateway: String?
        public var network: String?
        public var broadcast: String?
        public var netmask: String?
        public var dns1: String?
        public var dns2: String?
        /// bit/s, nil = unlimited.
        public var bwlimit: Int?
        public var hostname: String?
        public init() {}
    }

    public struct Rejected: Sendable, Equatable {
        public var index: Int
        public var name: String?
        public var reason: String
        public init(index: Int, name: String?, reason: String) {
            self.index = index
            self.name = name
            self.reason = reason
        }
    }
}
