import SliverNetwork

/// A sliver's share of the node's uplink, from its slice attributes, with PlanetLab's defaults
/// and clamping (plnode's bwlimit, NodeManager's bwmon):
///
/// - `net_min_rate` kbit/s (default 1): the guaranteed HTB rate, at least 1 kbit/s and at most
///   25 % of the node cap, so guarantees cannot starve the node;
/// - `net_max_rate` kbit/s (default: the node cap): the ceiling, at most the cap, at least the rate;
/// - `net_share` (default 1): the quantum, net_share x 1600 bytes per round when slivers share
///   spare bandwidth;
/// - `net_max_kbyte` KiB (default 10546875 = 1 Mbit/s for 24 h) and `net_thresh_kbyte` KiB
///   (default 9492187, 90 %): the daily byte cap and where throttling starts (ByteAccount).
///
/// The `net_i2_*` (Internet2 / exempt class) attributes are stored but not enforced.
struct LinkAllocation: Sendable, Equatable {
    /// bit/s
    var minRate: UInt64
    /// bit/s
    var maxRate: UInt64
    /// bytes
    var quantum: UInt32
    /// bytes per period
    var maxBytes: UInt64
    /// bytes per period
    var thresholdBytes: UInt64

    static let defaultMaxKiB: UInt64 = 10_546_875
    static let defaultThresholdKiB: UInt64 = 9_492_187
    /// PlanetLab's quantum unit: "safely above 1 Ethernet MTU".
    static let quantumUnit: UInt32 = 1600

    /// `capacity`: the node cap in bit/s.
    init(_ attributes: SliceAttributes, capacity: UInt64) {
        func number(_ name: String) -> UInt64? { attributes[name].flatMap { UInt64($0) } }
        minRate = min(max(HTBClass.minimumRate, (number("net_min_rate") ?? 1) * 1000), max(HTBClass.minimumRate, capacity / 4))
        maxRate = min(max(minRate, (number("net_max_rate") ?? capacity / 1000) * 1000), capacity)
        quantum = UInt32(number("net_share") ?? 1) * Self.quantumUnit
        maxBytes = (number("net_max_kbyte") ?? Self.defaultMaxKiB) * 1024
        thresholdBytes = (number("net_thresh_kbyte") ?? Self.defaultThresholdKiB) * 1024
    }

    /// The sliver's HTB class; `cap`: the daily-byte-cap ceiling in force, if any (never above
    /// net_max_rate, never below the guaranteed rate).
    func htbClass(cap: UInt64? = nil) -> HTBClass {
        HTBClass(rate: minRate, ceil: cap.map { min(maxRate, max(minRate, $0)) } ?? maxRate, quantum: quantum)
    }
}
