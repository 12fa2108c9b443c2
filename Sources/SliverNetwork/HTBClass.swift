#if canImport(Glibc)
import Glibc
#endif
import CMnl

/// The parameters of one HTB class: guaranteed rate, ceiling it may borrow up to, and the
/// quantum (bytes it sends per round when classes share spare bandwidth: the proportional
/// share). Rates are bit/s, rounded down to whole bytes per second because that is the unit
/// the kernel keeps (`psched_ratecfg`), so a class read back compares equal to the one written.
public struct HTBClass: Sendable, Equatable, CustomStringConvertible {
    public let rate: UInt64
    public let ceil: UInt64
    public let quantum: UInt32

    /// The smallest rate HTB is given (PlanetLab's bwmin, 1 kbit/s): rate and ceil must be
    /// non-zero for the kernel, and a tiny rate makes the burst time overflow its 32-bit field.
    public static let minimumRate: UInt64 = 1000

    public init(rate: UInt64, ceil: UInt64, quantum: UInt32) {
        self.rate = max(Self.minimumRate, rate) / 8 * 8
        self.ceil = max(self.rate, ceil / 8 * 8)
        self.quantum = max(1, quantum)
    }

    public var description: String { "rate \(rate / 1000) kbit/s ceil \(ceil / 1000) kbit/s quantum \(quantum) B" }

    /// The burst (bytes sent back to back at full speed before the class must wait) for a rate:
    /// tc's classic default, one timer tick's worth at HZ=1000 plus one 1600-byte MTU. Too small
    /// a burst loses credit at high rates; too large lets a class overshoot its rate briefly.
    static func burst(_ rate: UInt64) -> UInt64 { rate / 8 / 1000 + 1600 }

    /// Time to send `bytes` at `rate` bit/s in the scheduler's ticks: HTB keeps buffer and
    /// cbuffer as PSCHED ticks of 64 ns (PSCHED_SHIFT 6), and converts them back to ns.
    static func ticks(bytes: UInt64, rate: UInt64) -> UInt32 {
        let nanoseconds = Double(bytes) * 8 * 1e9 / Double(max(1, rate))
        return UInt32(min(Double(UInt32.max), nanoseconds / 64))
    }

    /// A rate as the kernel's tc_ratespec: bytes/s, saturated at 2^32-1 (faster rates go in
    /// TCA_HTB_RATE64/CEIL64). `linklayer` Ethernet tells the kernel that no rate table follows
    /// (old tc sent one; current kernels compute transmission times themselves).
    private static func spec(_ rate: UInt64) -> tc_ratespec {
        var spec = tc_ratespec()
        spec.linklayer = UInt8(TC_LINKLAYER_ETHERNET.rawValue)
        spec.rate = UInt32(min(rate / 8, UInt64(UInt32.max)))
        return spec
    }

    /// TCA_OPTIONS of an RTM_NEWTCLASS: TCA_HTB_PARMS plus the 64-bit rates when needed.
    func encodeOptions(into message: inout NetlinkMessage) {
        var options = tc_htb_opt()
        options.rate = Self.spec(rate)
        options.ceil = Self.spec(ceil)
        options.buffer = Self.ticks(bytes: Self.burst(rate), rate: rate)
        options.cbuffer = Self.ticks(bytes: Self.burst(ceil), rate: ceil)
        options.quantum = quantum
        message.beginNest(Int32(TCA_OPTIONS))
        message.attribute(Int32(TCA_HTB_PARMS), value: options)
        if rate / 8 > UInt64(UInt32.max) { message.attribute(Int32(TCA_HTB_RATE64), value: rate / 8) }
        if ceil / 8 > UInt64(UInt32.max) { message.attribute(Int32(TCA_HTB_CEIL64), value: ceil / 8) }
        message.endNest()
    }

    /// The class as an HTB class dump reports it (TCA_OPTIONS of RTM_NEWTCLASS), nil if it is
    /// not an HTB class.
    static func decode(options: UnsafeRawBufferPointer) -> HTBClass? {
        var parms: tc_htb_opt?
        var rate64: UInt64?, ceil64: UInt64?
        forEachAttribute(options) { type, value in
            switch type {
            case Int32(TCA_HTB_PARMS) where value.count >= MemoryLayout<tc_htb_opt>.size:
                parms = value.loadUnaligned(as: tc_htb_opt.self)
            case Int32(TCA_HTB_RATE64) where value.count >= 8: rate64 = value.loadUnaligned(as: UInt64.self)
            case Int32(TCA_HTB_CEIL64) where value.count >= 8: ceil64 = value.loadUnaligned(as: UInt64.self)
            default: break
            }
        }
        guard let parms else { return nil }
        return HTBClass(rate: (rate64 ?? UInt64(parms.rate.rate)) * 8, ceil: (ceil64 ?? UInt64(parms.ceil.rate)) * 8,
                        quantum: parms.quantum)
    }
}
