import PLCProtocol

/// What one GetSlivers entry asks of this node, in the terms of SliverManager: the result of
/// mapping a snapshot (SnapshotMapping), compared with the node by ReconcilePlanner.
public struct DesiredSliver: Sendable, Equatable {
    public var name: String
    public var sliceID: Int
    public var instantiation: String
    /// Seconds since the epoch; at or after it the sliver is not wanted any more.
    public var expires: Int
    public var image: String
    /// The attributes Sliverd knows (SliceAttributes' vocabulary), validated; the last value of
    /// a tag wins. The sliver's attributes are replaced by exactly these.
    public var attributes: [String: String]
    /// SSH keys (key_type "ssh", well-formed), in PLC's order, without duplicates.
    public var keys: [String]
    public var initscript: Initscript?
    /// Tags Sliverd does not implement (vsys, codemux, pldistro, ...): kept here and reported by
    /// `sliverctl plan`, never an error. Multi-valued tags keep every value.
    public var otherAttributes: [String: [String]]
    /// Things worth telling the operator that do not stop the sliver (a dropped key, a named
    /// initscript PLC did not send, an image change that needs a re-creation).
    public var notes: [String]
    /// False for `delegated` and `nm-controller` slices: PLC ships them to every node, but
    /// NodeManager creates them only when their controller asks (NM API Ticket/Create), which
    /// Sliverd does not serve. One that exists already (created with sliverctl) is kept in sync
    /// and not destroyed while PLC ships it.
    public var mayCreate: Bool

    public struct Initscript: Sendable, Equatable {
        /// The global initscript's name, or "initscript_code" for inline code.
        public var name: String
        public var code: String
        /// SHA-1 of the code: what the sliver's record remembers to notice a change.
        public var hash: String
    }
}

/// The whole desired state of the node: one snapshot, mapped.
public struct DesiredState: Sendable {
    public var timestamp: Int
    /// Wanted now: instantiated and not expired.
    public var slivers: [String: DesiredSliver] = [:]
    /// Names whose entry could not be used this time (undecodable, invalid values, unknown
    /// instantiation): the sliver, if it exists, is neither changed nor destroyed.
    public var held: [String: String] = [:]
    /// Entries that are present but not wanted on the node (expired, not-instantiated), with why.
    public var unwanted: [String: String] = [:]
    /// Set when a rejected entry has no readable name: it could be any sliver, so nothing is
    /// destroyed while this snapshot is the desired state.
    public var destroyBlocked: String?
    /// GetSlivers' `accounts`.
    public var accounts: [SliversSnapshot.Account] = []
    /// The earliest future expiry: the reconciler looks again then.
    public var nextExpiry: Int?

    public init(timestamp: Int) { self.timestamp = timestamp }
}
