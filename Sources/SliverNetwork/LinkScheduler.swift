#if canImport(Glibc)
import Glibc
#endif
import CMnl

/// The HTB tree on the node's uplink, PlanetLab's layout (plnode's bwlimit) without the DRL and
/// Internet2 levels, driven over rtnetlink (no `tc` process):
///
///     qdisc 1: htb default 0x1fff
///      class 1:1      rate = ceil = the node's cap (the parent every class borrows from)
///       class 1:1fff  host and unclassified traffic
///       class 1:(0x1000 | slot)  one per running sliver, + a pfifo leaf qdisc (0x1000|slot):
///
/// A sliver's class is named by its ID slot, which never changes while the sliver exists, so a
/// restarted daemon finds (adopts) the classes it made and a destroy removes exactly its own.
/// Packets find their class without a classifier: the firewall sets `skb->priority` to the
/// class id (NodeFirewall's sliver_class map) and HTB takes a priority that names one of its
/// leaf classes directly; anything else falls to the default class.
public final class LinkScheduler {
    public let device: String
    /// The node's cap in bit/s: rate and ceil of 1:1; no class's ceil exceeds it.
    public let capacity: UInt64

    public static let rootHandle: UInt32 = 0x0001_0000
    public static let nodeClass: UInt32 = 0x0001_0001
    public static let defaultClass: UInt32 = 0x0001_1fff
    /// Slots 0...0xffe have a class; 0xfff would be the default class (ids.slots is capped).
    public static let slots = 0xfff

    /// The class id of the sliver in `slot` (`1:(0x1000|slot)`), nil if the slot has none.
    public static func classID(slot: Int) -> UInt32? {
        guard slot >= 0, slot < slots else { return nil }
        return rootHandle | 0x1000 | UInt32(slot)
    }

    static func slot(classID: UInt32) -> Int? {
        guard classID & 0xffff_0000 == rootHandle else { return nil }
        let minor = classID & 0xffff
        guard minor & 0xf000 == 0x1000, minor != defaultClass & 0xffff else { return nil }
        return Int(minor & 0x0fff)
    }

    /// `1:1001` as tc and nft write a class id.
    public static func format(_ id: UInt32) -> String { String(id >> 16, radix: 16) + ":" + String(id & 0xffff, radix: 16) }

    /// What the kernel holds for each sliver slot: the last class written or adopted, so a
    /// change that writes the same values makes no system call.
    public private(set) var applied: [Int: HTBClass] = [:]

    public init(device: String, capacity: UInt64) {
        self.device = device
        self.capacity = capacity
    }

    /// A scheduler that takes `applied` as what the kernel holds (tests of the no-op path).
    convenience init(device: String, capacity: UInt64, applied: [Int: HTBClass]) {
        self.init(device: device, capacity: capacity)
        self.applied = applied
    }

    var nodeClass: HTBClass { HTBClass(rate: capacity, ceil: capacity, quantum: 1600) }
    /// Host traffic: PlanetLab's default class (guaranteed 1 kbit/s, may use the whole cap).
    var defaultClass: HTBClass { HTBClass(rate: HTBClass.minimumRate, ceil: capacity, quantum: 1600) }

    private func ifindex() throws(NetworkError) -> Int32 {
        let index = if_nametoindex(device)
        guard index != 0 else { throw NetworkError(stage: "tc.device", "no interface \(device)", errno: errno) }
        return Int32(index)
    }

    private func message(_ type: Int32, flags: Int32, ifindex: Int32, handle: UInt32, parent: UInt32, _ what: String) -> NetlinkMessage {
        var message = NetlinkMessage(type: type, flags: flags, what: "\(what) on \(device)")
        var tc = tcmsg()
        tc.tcm_family = UInt8(AF_UNSPEC)
        tc.tcm_ifindex = ifindex
        tc.tcm_handle = handle
        tc.tcm_parent = parent
        message.append(tc)
        return message
    }

    /// NLM_F_CREATE alone creates a missing class and changes an existing one in place: its
    /// counters, its queue and the packets in it stay (NLM_F_EXCL would refuse the change).
    private func classMessage(_ id: UInt32, parent: UInt32, _ spec: HTBClass, ifindex: Int32) -> NetlinkMessage {
        var message = message(Int32(RTM_NEWTCLASS), flags: NLM_F_CREATE | NLM_F_REPLACE, ifindex: ifindex, handle: id,
                              parent: parent, "class \(Self.format(id)) \(spec)")
        message.attribute(Int32(TCA_KIND), string: "htb")
        spec.encodeOptions(into: &message)
        return message
    }

    /// The sliver's leaf queue, a pfifo (limit = the device's txqueuelen) with the class's
    /// number as its handle; created with the class, destroyed by the kernel with it.
    private func leafMessage(_ id: UInt32, ifindex: Int32) -> NetlinkMessage {
        var message = message(Int32(RTM_NEWQDISC), flags: NLM_F_CREATE | NLM_F_REPLACE, ifindex: ifindex,
                              handle: (id & 0xffff) << 16, parent: id, "pfifo leaf of \(Self.format(id))")
        message.attribute(Int32(TCA_KIND), string: "pfifo")
        return message
    }

    // MARK: the tree

    /// Makes the uplink's tree hold exactly the node classes and `slivers` (slot -> class):
    /// an HTB root that is already ours is adopted and only differing classes are rewritten
    /// (running slivers' queues and counters untouched); classes of slots not listed are
    /// removed; any other root qdisc is replaced. Returns the slots whose class was made now
    /// (its counter starts at zero); the others were adopted.
    @discardableResult
    public func install(slivers: [Int: HTBClass]) throws(NetworkError) -> Set<Int> {
        let ifindex = try ifindex()
        let socket = try NetlinkSocket()
        var existing: [UInt32: ClassState] = [:]
        if try !rootIsOurs(socket, ifindex: ifindex) {
            var messages: [NetlinkMessage] = []
            if try rootHandleTaken(socket, ifindex: ifindex) {
                // A root 1: of another kind (or default) cannot be changed into ours, only removed.
                messages.append(message(Int32(RTM_DELQDISC), flags: 0, ifindex: ifindex, handle: Self.rootHandle,
                                        parent: UInt32(TC_H_ROOT), "remove foreign root qdisc 1:"))
            }
            var root = message(Int32(RTM_NEWQDISC), flags: NLM_F_CREATE | NLM_F_REPLACE, ifindex: ifindex,
                               handle: Self.rootHandle, parent: UInt32(TC_H_ROOT), "root qdisc 1: htb default 0x1fff")
            root.attribute(Int32(TCA_KIND), string: "htb")
            var glob = tc_htb_glob()
            glob.version = UInt32(TC_HTB_PROTOVER)
            glob.rate2quantum = 10  // unused: every class is given its quantum
            glob.defcls = Self.defaultClass & 0xffff
            root.beginNest(Int32(TCA_OPTIONS))
            root.attribute(Int32(TCA_HTB_INIT), value: glob)
            root.endNest()
            messages.append(root)
            try socket.transact(messages)
        } else {
            existing = try dump(socket, ifindex: ifindex)
        }
        var messages: [NetlinkMessage] = []
        // Leftovers first (slivers gone while the daemon was down), then parents before children.
        for (id, _) in existing.sorted(by: { $0.key < $1.key }) {
            if let slot = Self.slot(classID: id), slivers[slot] == nil {
                messages.append(message(Int32(RTM_DELTCLASS), flags: 0, ifindex: ifindex, handle: id, parent: 0,
                                        "remove class \(Self.format(id)) of no running sliver"))
            }
        }
        for (id, parent, spec) in [(Self.nodeClass, Self.rootHandle, nodeClass), (Self.defaultClass, Self.nodeClass, defaultClass)]
        where existing[id]?.spec != spec {
            messages.append(classMessage(id, parent: parent, spec, ifindex: ifindex))
        }
        applied = [:]
        var created: Set<Int> = []
        for (slot, spec) in slivers.sorted(by: { $0.key < $1.key }) {
            guard let id = Self.classID(slot: slot) else { continue }
            if existing[id]?.spec != spec { messages.append(classMessage(id, parent: Self.nodeClass, spec, ifindex: ifindex)) }
            if existing[id] == nil {
                messages.append(leafMessage(id, ifindex: ifindex))
                created.insert(slot)
            }
        }
        try socket.transact(messages)
        for (slot, spec) in slivers where Self.classID(slot: slot) != nil { applied[slot] = spec }
        return created
    }

    /// Creates or changes one sliver's class (live: its queue and counters stay). No system
    /// call when the kernel already has these values. Returns true when the class was made.
    @discardableResult
    public func set(slot: Int, _ spec: HTBClass) throws(NetworkError) -> Bool {
        guard let id = Self.classID(slot: slot), applied[slot] != spec else { return false }
        let ifindex = try ifindex()
        let create = applied[slot] == nil
        var messages = [classMessage(id, parent: Self.nodeClass, spec, ifindex: ifindex)]
        if create { messages.append(leafMessage(id, ifindex: ifindex)) }
        try NetlinkSocket().transact(messages)
        applied[slot] = spec
        return create
    }

    /// Removes a sliver's class and its leaf queue; a class that is already gone is no error.
    /// Returns the class's byte counter as it was just before (nil: there was no class).
    @discardableResult
    public func remove(slot: Int) throws(NetworkError) -> UInt64? {
        guard let id = Self.classID(slot: slot) else { return nil }
        applied[slot] = nil
        let socket = try NetlinkSocket()
        let ifindex = try ifindex()
        guard let last = try dump(socket, ifindex: ifindex)[id] else { return nil }
        do {
            try socket.transact([message(Int32(RTM_DELTCLASS), flags: 0, ifindex: ifindex, handle: id, parent: 0,
                                         "remove class \(Self.format(id))")])
        } catch where error.errno == ENOENT {
        }
        return last.bytes
    }

    /// Removes the whole tree (tests; an operator's uninstall): the device gets its default qdisc.
    public func uninstall() {
        guard let ifindex = try? ifindex(), let socket = try? NetlinkSocket() else { return }
        _ = try? socket.transact([message(Int32(RTM_DELQDISC), flags: 0, ifindex: ifindex, handle: Self.rootHandle,
                                          parent: UInt32(TC_H_ROOT), "remove root qdisc")])
        applied = [:]
    }

    // MARK: reading

    /// One class as the kernel reports it.
    public struct ClassState: Sendable, Equatable {
        public var spec: HTBClass
        /// Bytes the class has sent since it was created (TCA_STATS_BASIC).
        public var bytes: UInt64
    }

    /// Every HTB class of the uplink's root qdisc, from one RTM_GETTCLASS dump.
    public func classes() throws(NetworkError) -> [UInt32: ClassState] {
        try dump(NetlinkSocket(), ifindex: ifindex())
    }

    /// Bytes sent by each sliver slot's class, from one dump for all slivers.
    public func counters() throws(NetworkError) -> [Int: UInt64] {
        var out: [Int: UInt64] = [:]
        for (id, state) in try classes() {
            if let slot = Self.slot(classID: id) { out[slot] = state.bytes }
        }
        return out
    }

    private func dump(_ socket: NetlinkSocket, ifindex: Int32) throws(NetworkError) -> [UInt32: ClassState] {
        // The class dump is per device (tcm_ifindex); the qdisc's handle filters it further.
        let request = message(Int32(RTM_GETTCLASS), flags: 0, ifindex: ifindex, handle: 0, parent: 0, "RTM_GETTCLASS dump")
        var classes: [UInt32: ClassState] = [:]
        try socket.dump(request) { header, payload in
            guard Int32(header.nlmsg_type) == RTM_NEWTCLASS, payload.count >= MemoryLayout<tcmsg>.size else { return }
            let tc = payload.loadUnaligned(as: tcmsg.self)
            guard tc.tcm_ifindex == ifindex, tc.tcm_handle & 0xffff_0000 == Self.rootHandle else { return }
            var kind = "", spec: HTBClass?, bytes: UInt64 = 0
            forEachAttribute(UnsafeRawBufferPointer(rebasing: payload[MemoryLayout<tcmsg>.size...])) { type, value in
                switch type {
                case Int32(TCA_KIND): kind = String(decoding: value.prefix { $0 != 0 }, as: UTF8.self)
                case Int32(TCA_OPTIONS): spec = HTBClass.decode(options: value)
                case Int32(TCA_STATS2):
                    forEachAttribute(value) { type, stats in
                        if type == Int32(TCA_STATS_BASIC), stats.count >= 8 { bytes = stats.loadUnaligned(as: UInt64.self) }
                    }
                default: break
                }
            }
            if kind == "htb", let spec { classes[tc.tcm_handle] = ClassState(spec: spec, bytes: bytes) }
        }
        return classes
    }

    /// The root qdiscs of the device: (handle, kind, HTB default class).
    private func roots(_ socket: NetlinkSocket, ifindex: Int32) throws(NetworkError) -> [(handle: UInt32, kind: String, defcls: UInt32?)] {
        let request = message(Int32(RTM_GETQDISC), flags: 0, ifindex: ifindex, handle: 0, parent: 0, "RTM_GETQDISC dump")
        var roots: [(UInt32, String, UInt32?)] = []
        try socket.dump(request) { header, payload in
            guard Int32(header.nlmsg_type) == RTM_NEWQDISC, payload.count >= MemoryLayout<tcmsg>.size else { return }
            let tc = payload.loadUnaligned(as: tcmsg.self)
            guard tc.tcm_ifindex == ifindex, tc.tcm_parent == UInt32(TC_H_ROOT) else { return }
            var kind = "", defcls: UInt32?
            forEachAttribute(UnsafeRawBufferPointer(rebasing: payload[MemoryLayout<tcmsg>.size...])) { type, value in
                if type == Int32(TCA_KIND) { kind = String(decoding: value.prefix { $0 != 0 }, as: UTF8.self) }
                if type == Int32(TCA_OPTIONS) {
                    forEachAttribute(value) { type, init_ in
                        if type == Int32(TCA_HTB_INIT), init_.count >= MemoryLayout<tc_htb_glob>.size {
                            defcls = init_.loadUnaligned(as: tc_htb_glob.self).defcls
                        }
                    }
                }
            }
            roots.append((tc.tcm_handle, kind, defcls))
        }
        return roots
    }

    private func rootIsOurs(_ socket: NetlinkSocket, ifindex: Int32) throws(NetworkError) -> Bool {
        try roots(socket, ifindex: ifindex).contains { $0.handle == Self.rootHandle && $0.kind == "htb" && $0.defcls == Self.defaultClass & 0xffff }
    }

    private func rootHandleTaken(_ socket: NetlinkSocket, ifindex: Int32) throws(NetworkError) -> Bool {
        try roots(socket, ifindex: ifindex).contains { $0.handle == Self.rootHandle }
    }
}
