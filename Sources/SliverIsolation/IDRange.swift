/// A contiguous range of host user and group IDs that a sliver's user namespace maps onto
/// 0..<count. Slot n covers first + n*count ..< first + (n+1)*count, so slots never overlap.
public struct IDRange: Codable, Sendable, Equatable, Hashable {
    public var slot: Int
    public var base: UInt32
    public var count: UInt32

    public init(slot: Int, base: UInt32, count: UInt32) {
        self.slot = slot
        self.base = base
        self.count = count
    }

    public func overlaps(_ other: IDRange) -> Bool {
        base < other.base + other.count && other.base < base + count
    }
}

/// Hands out ID ranges. Pure: the set of slots in use is the persisted sliver records (a range
/// belongs to a sliver from create until its destroy completes), so the allocator keeps no state
/// of its own that could disagree with them after a crash.
public struct IDRangeAllocator: Sendable {
    /// First host ID of slot 0. Default 1_048_576 (0x100000): above every ID that Debian's
    /// adduser (1000-59999), systemd's dynamic users (61184-65519) and /etc/subuid's
    /// customary 100000-165535 hand out.
    public var first: UInt32
    /// IDs per sliver: the full 16-bit range, so images with nobody (65534) work.
    public var size: UInt32
    /// Number of slots: ranges end at first + slots*size, which must stay below 2^31.
    public var slots: Int

    public init(first: UInt32 = 1_048_576, size: UInt32 = 65_536, slots: Int = 4096) {
        self.first = first
        self.size = size
        self.slots = slots
    }

    public var isValid: Bool {
        size > 0 && slots > 0 && UInt64(first) + UInt64(slots) * UInt64(size) <= UInt64(Int32.max)
    }

    public func range(slot: Int) -> IDRange {
        IDRange(slot: slot, base: first + UInt32(slot) * size, count: size)
    }

    /// The lowest slot not in `used`.
    public func allocate(excluding used: Set<Int>) throws(IsolationError) -> IDRange {
        for slot in 0..<slots where !used.contains(slot) {
            return range(slot: slot)
        }
        throw IsolationError(.exhausted, stage: "idrange.allocate", "all \(slots) ID ranges are in use")
    }
}
