import Foundation
import SliverNetwork

/// The link side of the manager: each running sliver's HTB class on the uplink, from its
/// attributes and its daily byte cap (ByteCapMonitor), and the cap's periodic pass.
extension SliverManager {
    func linkAllocation(_ record: SliverRecord) -> LinkAllocation {
        LinkAllocation(record.attributes, capacity: config.bandwidthCapKbit * 1000)
    }

    /// The class the sliver should have now: its attributes, held lower while it is capped.
    func linkClass(_ record: SliverRecord) -> HTBClass {
        linkAllocation(record).htbClass(cap: byteCaps?.account(record.name)?.cap)
    }

    /// A starting sliver's class and firewall elements; a class made now counts from zero.
    func attachNetwork(_ record: SliverRecord) throws(NodeError) {
        guard let network else { return }
        if try network.attach(record, linkClass(record)) {
            byteCaps?.classCreated(record.name, now: Date().timeIntervalSince1970)
        }
    }

    /// Removes a sliver's network objects; the last reading of its class counter is counted.
    func detachNetwork(_ record: SliverRecord) {
        guard let network else { return }
        let last = network.detach(record)
        byteCaps?.classRemoved(record.name, counter: last, now: Date().timeIntervalSince1970)
        saveByteCaps()
    }

    /// Rewrites a running sliver's class after an attribute change (no call if it is the same).
    func applyLinkClass(_ record: SliverRecord) throws(NodeError) {
        guard let network, record.state == .running else { return }
        try network.setClass(record, linkClass(record))
    }

    /// The firewall table and the HTB tree with exactly the running slivers (adopting what is
    /// there); accounts of classes made now count from zero.
    func installNetwork(running: [SliverRecord]) throws(NodeError) {
        guard let network else { return }
        var classes: [String: HTBClass] = [:]
        for record in running { classes[record.name] = linkClass(record) }
        let created = try network.install(running: running, classes: classes)
        let now = Date().timeIntervalSince1970
        for name in created { byteCaps?.classCreated(name, now: now) }
    }

    /// Bytes sent by each running sliver's class (by slot), from one dump; nil without network.
    public func linkCounters() -> [Int: UInt64]? {
        guard let network else { return nil }
        do {
            return try network.scheduler.counters()
        } catch {
            log.error("reading the uplink's class counters failed", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// One pass of the daily byte caps over every running sliver: one counter dump, one
    /// decision per sliver, a kernel call only for a class whose ceiling changes, one write of
    /// the accounts. Returns the caps set or lifted (for the log and the events).
    public func byteCapPass(now: Double = Date().timeIntervalSince1970) -> [(sliver: String, reason: String)] {
        guard let network, let byteCaps, let counters = linkCounters() else { return [] }
        let running = records.values.filter { $0.state == .running }
        var byName: [String: UInt64] = [:], allocations: [String: LinkAllocation] = [:]
        for record in running {
            guard let counter = counters[record.id] else { continue }
            byName[record.name] = counter
            allocations[record.name] = linkAllocation(record)
        }
        let changes = byteCaps.pass(now: now, counters: byName, allocations: allocations, existing: Set(records.keys))
        for record in running.sorted(by: { $0.name < $1.name }) where byName[record.name] != nil {
            do {
                try network.setClass(record, linkClass(record))
            } catch {
                log.error("changing the link class failed", metadata: ["sliver": "\(record.name)", "error": "\(error)"])
            }
        }
        saveByteCaps()
        return changes.map { ($0.sliver, $0.reason) }
    }

    func saveByteCaps() {
        do {
            try byteCaps?.save()
        } catch {
            log.error("saving the byte accounting failed", metadata: ["error": "\(error)"])
        }
    }

    /// What `show` reports about the sliver's link: bytes sent in its period (up to `counters`,
    /// a fresh reading, when given) and its class as the kernel has it.
    public func networkUsage(_ record: SliverRecord, counters: [Int: UInt64]?) -> NetworkUsage? {
        guard let network else { return nil }
        let account = byteCaps?.account(record.name)
        var usage = NetworkUsage(bytesSent: account?.usedBytes ?? 0, periodStart: account?.periodStart,
                                 capped: account?.cap != nil)
        if let counter = counters?[record.id], let account, record.state == .running {
            var current = account
            current.record(counter: counter, now: Date().timeIntervalSince1970)
            usage.bytesSent = current.usedBytes
        }
        if record.state == .running, let applied = network.scheduler.applied[record.id] {
            usage.rateBitsPerSecond = applied.rate
            usage.ceilBitsPerSecond = applied.ceil
        }
        return usage
    }
}
