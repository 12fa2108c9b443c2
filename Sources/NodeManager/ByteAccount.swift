/// One slice's transmit accounting for its daily byte cap (PlanetLab's bwmon `Slice`): the
/// start of its 24 h period, the bytes it sent since, and the HTB counter seen last, from
/// which the next reading is a difference. Persisted (ByteCapMonitor), so neither a daemon
/// restart nor a destroy and re-create within the period starts the count from zero.
struct ByteAccount: Codable, Sendable, Equatable {
    /// Length of an accounting period: a day.
    static let period = 86_400.0

    /// Seconds since the epoch.
    var periodStart: Double
    /// Bytes sent in this period up to the last reading.
    var usedBytes: UInt64 = 0
    /// The sliver's class counter (bytes since the class was made) at the last reading.
    var lastCounter: UInt64 = 0
    /// The ceiling (bit/s) the cap holds the sliver to; nil while it is not capped.
    var cap: UInt64?

    enum CodingKeys: String, CodingKey {
        case periodStart = "period_start", usedBytes = "used_bytes", lastCounter = "last_counter", cap
    }

    init(periodStart: Double) {
        self.periodStart = periodStart
    }

    var periodEnd: Double { periodStart + Self.period }

    /// A new period starts when the old one is over: nothing counted, no cap.
    mutating func resetIfOver(now: Double, counter: UInt64) {
        guard now >= periodEnd else { return }
        periodStart = now
        usedBytes = 0
        lastCounter = counter
        cap = nil
    }

    /// Counts a reading of the class counter. A counter below the last reading means the class
    /// was made anew (the sliver restarted, the node rebooted) and counts from zero again: all of
    /// it is new, and what was counted before stays counted (PlanetLab reset the period here,
    /// which let a restart or a re-create wipe the day's usage).
    mutating func record(counter: UInt64, now: Double) {
        resetIfOver(now: now, counter: counter)
        usedBytes += counter >= lastCounter ? counter - lastCounter : counter
        lastCounter = counter
    }

    /// The class was made: its counter starts at zero.
    mutating func classCreated() { lastCounter = 0 }

    /// The ceiling the cap asks for now, nil for none: once the period's bytes reach the
    /// threshold, what is left of `maxBytes` spread over the seconds left in the period
    /// (bit/s), never below the guaranteed rate; none when that is no lower than net_max_rate.
    func wantedCap(_ allocation: LinkAllocation, now: Double) -> UInt64? {
        guard usedBytes >= allocation.thresholdBytes else { return nil }
        let left = allocation.maxBytes > usedBytes ? allocation.maxBytes - usedBytes : 0
        let seconds = max(1, periodEnd - now)
        let rate = max(allocation.minRate, UInt64(min(Double(UInt64.max / 2), Double(left) * 8 / seconds)))
        return rate < allocation.maxRate ? rate : nil
    }
}
