import Foundation
import Testing
@testable import NodeManager
@testable import SliverNetwork

/// A sliver's HTB class from its attributes: PlanetLab's defaults and clamping.
@Suite struct LinkAllocationTests {
    static let gigabit: UInt64 = 1_000_000_000

    @Test func defaults() throws {
        let allocation = LinkAllocation(SliceAttributes(), capacity: Self.gigabit)
        #expect(allocation.minRate == 1000 && allocation.maxRate == Self.gigabit && allocation.quantum == 1600)
        #expect(allocation.maxBytes == 10_546_875 * 1024 && allocation.thresholdBytes == 9_492_187 * 1024)
        #expect(allocation.htbClass() == HTBClass(rate: 1000, ceil: Self.gigabit, quantum: 1600))
    }

    @Test(arguments: [
        // attributes, cap bit/s -> rate, ceil, quantum
        (["net_min_rate": "500", "net_max_rate": "8000", "net_share": "3"], gigabit, 500_000 as UInt64, 8_000_000 as UInt64, 4800 as UInt32),
        (["net_min_rate": "0"], gigabit, 1000, gigabit, 1600),                     // at least 1 kbit/s
        (["net_min_rate": "900000"], gigabit, 250_000_000, gigabit, 1600),         // at most 25 % of the cap
        (["net_max_rate": "5000000"], 100_000_000, 1000, 100_000_000, 1600),       // ceil at most the cap
        (["net_min_rate": "2000", "net_max_rate": "1000"], gigabit, 2_000_000, 2_000_000, 1600),  // ceil >= rate
    ])
    func clamps(_ attributes: [String: String], _ capacity: UInt64, _ rate: UInt64, _ ceil: UInt64, _ quantum: UInt32) throws {
        let spec = LinkAllocation(try SliceAttributes(attributes), capacity: capacity).htbClass()
        #expect(spec == HTBClass(rate: rate, ceil: ceil, quantum: quantum), "\(spec)")
    }

    @Test func capStaysBetweenRateAndMax() throws {
        let allocation = LinkAllocation(try SliceAttributes(["net_min_rate": "100", "net_max_rate": "8000"]), capacity: Self.gigabit)
        #expect(allocation.htbClass(cap: 10).ceil == 100_000)
        #expect(allocation.htbClass(cap: 50_000_000).ceil == 8_000_000)
        #expect(allocation.htbClass(cap: 2_000_000).ceil == 2_000_000)
    }

    @Test func classIDs() {
        #expect(LinkScheduler.classID(slot: 0) == 0x0001_1000)
        #expect(LinkScheduler.format(LinkScheduler.classID(slot: 0x2a)!) == "1:102a")
        #expect(LinkScheduler.classID(slot: 0xffe) == 0x0001_1ffe)
        #expect(LinkScheduler.classID(slot: 0xfff) == nil, "slot 4095 would be the default class 1:1fff")
        var config = NodeConfig()
        #expect(config.idAllocator.slots == 4096)
        config.uplink = "up0"
        #expect(config.idAllocator.slots == 4095)
    }

    @Test func htbOptionsRoundTrip() {
        for spec in [HTBClass(rate: 1000, ceil: 8_000_000, quantum: 4800), HTBClass(rate: 1000, ceil: 40_000_000_000, quantum: 1600)] {
            var message = NetlinkMessage(type: 0, flags: 0, what: "test")
            spec.encodeOptions(into: &message)
            let decoded = message.bytes.withUnsafeBytes { raw -> HTBClass? in
                var found: HTBClass?
                forEachAttribute(UnsafeRawBufferPointer(rebasing: raw[16...])) { _, options in found = HTBClass.decode(options: options) }
                return found
            }
            #expect(decoded == spec, "64-bit rates go in TCA_HTB_RATE64/CEIL64")
        }
    }
}

/// The daily byte cap's arithmetic (PlanetLab's bwmon Slice.update), without a kernel.
@Suite struct ByteAccountTests {
    static let t0 = 1_800_000_000.0
    static let allocation = LinkAllocation(try! SliceAttributes(["net_max_kbyte": "20480", "net_thresh_kbyte": "1024", "net_max_rate": "8000"]),
                                           capacity: 1_000_000_000)

    @Test func capsOnlyPastTheThreshold() {
        var account = ByteAccount(periodStart: Self.t0)
        account.record(counter: 1024 * 1024 - 1, now: Self.t0 + 10)
        #expect(account.wantedCap(Self.allocation, now: Self.t0 + 10) == nil)
        account.record(counter: 1_500_000, now: Self.t0 + 100)
        #expect(account.usedBytes == 1_500_000)
        // What is left of 20 MiB, spread over the rest of the day.
        let expected = UInt64(Double(20480 * 1024 - 1_500_000) * 8 / (86_400 - 100))
        #expect(account.wantedCap(Self.allocation, now: Self.t0 + 100) == expected)
    }

    @Test func capIsFlooredAtTheGuaranteedRateAndLiftedAboveTheMax() throws {
        var account = ByteAccount(periodStart: Self.t0)
        account.record(counter: 30 * 1024 * 1024, now: Self.t0 + 100)  // past net_max_kbyte
        #expect(account.wantedCap(Self.allocation, now: Self.t0 + 100) == Self.allocation.minRate)
        let generous = LinkAllocation(try SliceAttributes(["net_max_kbyte": "100000000", "net_thresh_kbyte": "1", "net_max_rate": "8000"]),
                                      capacity: 1_000_000_000)
        #expect(account.wantedCap(generous, now: Self.t0 + 100) == nil, "a cap above net_max_rate is no cap")
    }

    @Test func periodResetsAfterADay() {
        var account = ByteAccount(periodStart: Self.t0)
        account.record(counter: 5_000_000, now: Self.t0 + 1000)
        account.cap = 1234
        account.record(counter: 6_000_000, now: Self.t0 + 86_400)
        #expect(account.periodStart == Self.t0 + 86_400)
        #expect(account.usedBytes == 0 && account.lastCounter == 6_000_000 && account.cap == nil)
        account.record(counter: 6_500_000, now: Self.t0 + 86_500)
        #expect(account.usedBytes == 500_000)
    }

    @Test func countersGoingBackwardsCountFromZero() {
        var account = ByteAccount(periodStart: Self.t0)
        account.record(counter: 3_000_000, now: Self.t0 + 10)
        // The class was made anew (sliver restarted, node rebooted): its counter restarted at 0.
        account.record(counter: 200_000, now: Self.t0 + 20)
        #expect(account.usedBytes == 3_200_000, "no negative difference, nothing counted twice, nothing forgotten")
        #expect(account.lastCounter == 200_000)
        account.record(counter: 300_000, now: Self.t0 + 30)
        #expect(account.usedBytes == 3_300_000)
    }
}

@Suite struct ByteCapMonitorTests {
    static let t0 = ByteAccountTests.t0

    func monitor() throws -> (ByteCapMonitor, String) {
        let dir = "/tmp/sliverd-test-bwmon-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return (ByteCapMonitor(stateDir: dir), dir)
    }

    @Test func eventsOnlyWhenACapStartsOrEndsAndAccountsPersist() throws {
        let (monitor, dir) = try monitor()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let allocations = ["s_a": ByteAccountTests.allocation]
        monitor.classCreated("s_a", now: Self.t0)
        #expect(monitor.pass(now: Self.t0 + 1, counters: ["s_a": 1000], allocations: allocations, existing: ["s_a"]).isEmpty)
        let capped = monitor.pass(now: Self.t0 + 2, counters: ["s_a": 2_000_000], allocations: allocations, existing: ["s_a"])
        #expect(capped.count == 1 && capped[0].cap != nil && capped[0].reason.hasPrefix("net cap:"), "\(capped)")
        let cap = try #require(monitor.account("s_a")?.cap)
        // The same reading again: the same cap, no event, and the class would be written with
        // the same values (LinkScheduler.set then makes no call).
        #expect(monitor.pass(now: Self.t0 + 3, counters: ["s_a": 2_000_000], allocations: allocations, existing: ["s_a"]).isEmpty)
        let spec = ByteAccountTests.allocation.htbClass(cap: monitor.account("s_a")?.cap)
        #expect(spec == ByteAccountTests.allocation.htbClass(cap: cap))
        // The scheduler makes no kernel call for a class it already holds: on a device that does
        // not exist, the same class is accepted silently, a different one reaches the kernel.
        let scheduler = LinkScheduler(device: "nosuchdev0", capacity: 1_000_000_000, applied: [7: spec])
        #expect(throws: Never.self) { try scheduler.set(slot: 7, spec) }
        #expect(throws: NetworkError.self) { try scheduler.set(slot: 7, HTBClass(rate: spec.rate, ceil: spec.ceil + 8000, quantum: spec.quantum)) }
        try monitor.save()
        // A restarted daemon reads the accounts back.
        let again = ByteCapMonitor(stateDir: dir)
        #expect(again.account("s_a") == monitor.account("s_a") && again.loadProblem == nil)
        // The next period lifts the cap.
        let lifted = again.pass(now: Self.t0 + 86_400, counters: ["s_a": 2_000_100], allocations: allocations, existing: ["s_a"])
        #expect(lifted.count == 1 && lifted[0].cap == nil && lifted[0].reason.hasPrefix("net cap lifted"), "\(lifted)")
    }

    @Test func anUnreadableFileStartsTheAccountingAnew() throws {
        let (_, dir) = try monitor()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "{not json".write(toFile: dir + "/bwmon.json", atomically: true, encoding: .utf8)
        let monitor = ByteCapMonitor(stateDir: dir)
        #expect(monitor.loadProblem?.contains("bwmon.json") == true && monitor.accounts.isEmpty)
        monitor.classCreated("s_c", now: Self.t0)
        try monitor.save()
        #expect(ByteCapMonitor(stateDir: dir).account("s_c") != nil)
    }

    @Test func aDestroyedSliceKeepsItsAccountUntilItsPeriodEnds() throws {
        let (monitor, dir) = try monitor()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        monitor.classCreated("s_b", now: Self.t0)
        _ = monitor.pass(now: Self.t0 + 10, counters: ["s_b": 1_000_000], allocations: ["s_b": ByteAccountTests.allocation], existing: ["s_b"])
        // Destroyed: the last 500 kB of its class are counted; gone from the node.
        monitor.classRemoved("s_b", counter: 1_500_000, now: Self.t0 + 20)
        _ = monitor.pass(now: Self.t0 + 30, counters: [:], allocations: [:], existing: [])
        #expect(monitor.account("s_b")?.usedBytes == 1_500_000)
        // Re-created within the period: its new class counts on top of what was sent.
        monitor.classCreated("s_b", now: Self.t0 + 40)
        _ = monitor.pass(now: Self.t0 + 50, counters: ["s_b": 100], allocations: ["s_b": ByteAccountTests.allocation], existing: ["s_b"])
        #expect(monitor.account("s_b")?.usedBytes == 1_500_100)
        #expect(monitor.account("s_b")?.cap != nil)
        // Gone for good: forgotten once its period is over.
        monitor.classRemoved("s_b", counter: 100, now: Self.t0 + 60)
        _ = monitor.pass(now: Self.t0 + 86_399, counters: [:], allocations: [:], existing: [])
        #expect(monitor.account("s_b") != nil)
        _ = monitor.pass(now: Self.t0 + 86_400, counters: [:], allocations: [:], existing: [])
        #expect(monitor.account("s_b") == nil)
    }
}
