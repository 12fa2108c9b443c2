import Foundation
import Testing
@testable import NodeManager
import PLCProtocol
import SliverIsolation

/// The pure part of provisioning: snapshot -> desired state -> plan against records.
@Suite struct ReconcilePlanTests {
    static let now = 1_800_000_000
    static let alice = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICVqF3hMrDpRDboVK5VSSb alice@example.org"
    static let bob = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE50N6h26aY99lRV9rlhu bob@example.org"

    static func sliver(_ name: String, _ attributes: [(String, String)] = [], keys: [String] = [alice],
                       expires: Int = 2_147_483_647, instantiation: String = "plc-instantiated") -> SliversSnapshot.Sliver {
        SliversSnapshot.Sliver(name: name, sliceID: 1, instantiation: instantiation, expires: expires,
                               keys: keys.map { .init(key: $0) },
                               attributes: [.init("vref", "busybox")] + attributes.map { .init($0.0, $0.1) }, family: "lxc-f20-x86_64")
    }

    static func record(_ want: DesiredSliver, state: SliverState = .running, startedAt: Double = 10) -> SliverRecord {
        SliverRecord(name: want.name, image: want.image, imagePath: "/images/" + want.image,
                     attributes: try! SliceAttributes(want.attributes), idRange: IDRange(slot: 0, base: 0x1000_0000, count: 65536),
                     state: state, initProcess: nil, createdAt: 1, startedAt: state == .running ? startedAt : nil, sshKeys: want.keys,
                     initscript: want.initscript.map { InitscriptRun(hash: $0.hash, startedAt: startedAt) })
    }

    @Test func mapsAttributesKeysImageAndInitscripts() throws {
        var snapshot = SliversSnapshot(timestamp: Self.now, slivers: [
            Self.sliver("pl_a", [("cpu_share", "2"), ("cpu_share", "5"), ("vsys", "vif_up"), ("vsys", "fd_tuntap"),
                                 ("codemux", "host,80"), ("initscript", "hello"), ("memlock_hard", "262144")],
                        keys: [Self.alice, Self.alice, "not a key", Self.bob]),
            Self.sliver("pl_b", [("initscript_code", "#!/bin/sh\necho inline\n"), ("initscript", "hello")]),
            Self.sliver("pl_c", [("initscript", "missing")]),
        ])
        snapshot.slivers[2].attributes.removeFirst()  // no vref: the family is the image
        snapshot.initscripts = [.init(name: "hello", script: "#!/bin/sh\necho $1 $2\n"), .init(name: "off", enabled: false, script: "x")]
        let desired = SnapshotMapping().map(snapshot, now: Self.now)
        let a = try #require(desired.slivers["pl_a"])
        #expect(a.image == "busybox")
        #expect(a.attributes == ["vref": "busybox", "cpu_share": "5", "initscript": "hello", "memlock_hard": "262144"])
        #expect(a.otherAttributes == ["vsys": ["vif_up", "fd_tuntap"], "codemux": ["host,80"]])
        #expect(a.keys == [Self.alice, Self.bob])
        #expect(a.notes.count == 1 && a.notes[0].contains("not a key"))
        #expect(a.initscript?.name == "hello" && a.initscript?.code == "#!/bin/sh\necho $1 $2\n")
        #expect(a.initscript?.hash == "eac09a3bffa90df0225794c9171ebc574d5f98dc")  // sha1sum of the code
        #expect(desired.slivers["pl_b"]?.initscript?.name == "initscript_code")
        #expect(desired.slivers["pl_c"]?.image == "lxc-f20-x86_64" && desired.slivers["pl_c"]?.initscript == nil)
        #expect(desired.slivers["pl_c"]?.notes.first?.contains("initscript \"missing\"") == true)
        // A configured default image wins over the family, vref over both.
        let withDefault = SnapshotMapping(defaultImage: "debian").map(snapshot, now: Self.now)
        #expect(withDefault.slivers["pl_c"]?.image == "debian" && withDefault.slivers["pl_a"]?.image == "busybox")
    }

    @Test func invalidValuesHoldOnlyThatSliver() {
        var snapshot = SliversSnapshot(timestamp: Self.now, slivers: [
            Self.sliver("pl_neg", [("cpu_share", "-1")]),
            Self.sliver("pl_text", [("disk_max", "lots")]),
            Self.sliver("pl_range", [("cpu_pct", "101")]),
            Self.sliver("pl_ok", [("cpu_share", "3")]),
            Self.sliver("Bad/Name"),
            Self.sliver("pl_twice"), Self.sliver("pl_twice"),
            Self.sliver("pl_weird", instantiation: "sometimes"),
        ])
        snapshot.rejected = [.init(index: 9, name: "pl_broken", reason: "slivers[9].expires: missing (required)")]
        let desired = SnapshotMapping().map(snapshot, now: Self.now)
        #expect(Set(desired.slivers.keys) == ["pl_ok"])
        #expect(desired.held["pl_neg"]?.contains("invalid attribute cpu_share \"-1\"") == true)
        #expect(desired.held["pl_text"]?.contains("not an integer") == true)
        #expect(desired.held["pl_range"]?.contains("out of range") == true)
        #expect(desired.held["Bad/Name"] != nil && desired.held["pl_twice"] != nil && desired.held["pl_weird"] != nil)
        #expect(desired.held["pl_broken"]?.contains("expires") == true)
        #expect(desired.destroyBlocked == nil)
        // Held slivers that exist are neither changed nor destroyed; the good one is created.
        let records = ["pl_neg": Self.record(DesiredSliver.sample("pl_neg")), "pl_broken": Self.record(DesiredSliver.sample("pl_broken"))]
        let plan = ReconcilePlanner.plan(desired, records: records, unreadable: [], now: Self.now)
        #expect(plan.slivers.map(\.name) == ["pl_ok"])
        #expect(plan.skipped["pl_neg"] != nil && plan.skipped["pl_broken"] != nil)
    }

    @Test func expiryInstantiationAndUnnamedRejects() {
        var snapshot = SliversSnapshot(timestamp: Self.now, slivers: [
            Self.sliver("pl_old", expires: Self.now - 1),
            Self.sliver("pl_soon", expires: Self.now + 60),
            Self.sliver("pl_deleg", instantiation: "delegated"),
            Self.sliver("pl_ctl", instantiation: "nm-controller"),
            Self.sliver("pl_none", instantiation: "not-instantiated"),
        ])
        let desired = SnapshotMapping().map(snapshot, now: Self.now)
        #expect(desired.unwanted["pl_old"]?.hasPrefix("expired at") == true && desired.unwanted["pl_none"] != nil)
        #expect(desired.nextExpiry == Self.now + 60)
        #expect(desired.slivers["pl_deleg"]?.mayCreate == false && desired.slivers["pl_ctl"]?.mayCreate == false)
        let existing = ["pl_old", "pl_none", "pl_deleg", "pl_stray"].map { Self.record(DesiredSliver.sample($0)) }
        let records = Dictionary(uniqueKeysWithValues: existing.map { ($0.name, $0) })
        let plan = ReconcilePlanner.plan(desired, records: records, unreadable: [], now: Self.now)
        #expect(plan.slivers.filter { $0.steps == [.destroy] }.map(\.name) == ["pl_none", "pl_old", "pl_stray"])
        #expect(plan.slivers.first { $0.name == "pl_old" }?.reason.hasPrefix("expired") == true)
        #expect(plan.slivers.first { $0.name == "pl_stray" }?.reason == "not in the snapshot")
        #expect(plan.slivers.contains { $0.name == "pl_soon" && $0.reason == "new in the snapshot" })
        // delegated/nm-controller: never created here; an existing one (made by its controller
        // with sliverctl) is kept in sync with PLC (its keys here) and not destroyed.
        #expect(plan.slivers.first { $0.name == "pl_deleg" }?.steps == [.setKeys([Self.alice])])
        #expect(!plan.slivers.contains { $0.name == "pl_ctl" })
        #expect(plan.skipped["pl_ctl"]?.contains("nm-controller") == true)
        // Later, pl_soon has expired: the same desired state now destroys it.
        let later = ReconcilePlanner.plan(desired, records: ["pl_soon": Self.record(desired.slivers["pl_soon"]!)], unreadable: [], now: Self.now + 61)
        #expect(later.slivers.map(\.name).contains("pl_soon") && later.slivers.first { $0.name == "pl_soon" }?.steps == [.destroy])

        // A rejected entry without a name could be any sliver: nothing is destroyed.
        snapshot.rejected = [.init(index: 3, name: nil, reason: "slivers[3].name: expected a string, got int 5")]
        let blocked = ReconcilePlanner.plan(SnapshotMapping().map(snapshot, now: Self.now), records: records, unreadable: [], now: Self.now)
        #expect(!blocked.slivers.contains { $0.steps.contains(.destroy) })
        #expect(blocked.skipped["pl_stray"]?.contains("not destroyed") == true)
        // An unreadable record is left alone, even when the snapshot wants that name.
        let unreadable = ReconcilePlanner.plan(SnapshotMapping().map(snapshot, now: Self.now), records: [:], unreadable: ["pl_soon"], now: Self.now)
        #expect(!unreadable.slivers.contains { $0.name == "pl_soon" } && unreadable.skipped["pl_soon"] != nil)
    }

    @Test func updatesInPlaceAndMatchingNodeHasEmptyPlan() throws {
        var snapshot = SliversSnapshot(timestamp: Self.now, slivers: [Self.sliver("pl_a", [("cpu_share", "2"), ("initscript", "hello")])])
        snapshot.initscripts = [.init(name: "hello", script: "v1")]
        let desired = SnapshotMapping().map(snapshot, now: Self.now)
        let want = try #require(desired.slivers["pl_a"])
        let matching = Self.record(want)
        #expect(ReconcilePlanner.plan(desired, records: ["pl_a": matching], unreadable: [], now: Self.now).isEmpty)

        // Attribute, key and initscript changes: updates in place, no restart.
        var changed = snapshot
        changed.slivers[0].attributes = [.init("vref", "busybox"), .init("initscript", "hello")]
        changed.slivers[0].keys.append(.init(key: Self.bob))
        changed.initscripts[0].script = "v2"
        let plan = ReconcilePlanner.plan(SnapshotMapping().map(changed, now: Self.now), records: ["pl_a": matching], unreadable: [], now: Self.now)
        let steps = try #require(plan.slivers.first?.steps)
        #expect(steps.count == 3 && !steps.contains(.start) && !steps.contains(.destroy))
        #expect(steps[0] == .setAttributes(["vref": "busybox", "initscript": "hello"]))
        #expect(steps[1] == .setKeys([Self.alice, Self.bob]))
        if case .initscript(let action, let script) = steps[2] { #expect(action == .restart && script?.code == "v2") } else { Issue.record("\(steps)") }
        #expect(plan.slivers[0].reason.contains("cpu_share 2 -> default"))

        // A stopped sliver is started, and its initscript runs `start` for the new boot.
        var stopped = matching
        stopped.state = .stopped
        let restart = ReconcilePlanner.plan(desired, records: ["pl_a": stopped], unreadable: [], now: Self.now)
        #expect(restart.slivers.first?.steps.first == .start)
        #expect(restart.slivers.first?.steps.last == .initscript(.start, want.initscript))
        // A boot the initscript has not seen (recovery restarted it after a reboot): `start`.
        var rebooted = matching
        rebooted.startedAt = 99
        #expect(ReconcilePlanner.plan(desired, records: ["pl_a": rebooted], unreadable: [], now: Self.now).slivers.first?.steps
                == [.initscript(.start, want.initscript)])
        // Disabled (frozen): no initscript is run into it.
        var disabled = snapshot
        disabled.slivers[0].attributes.append(.init("enabled", "0"))
        let frozen = ReconcilePlanner.plan(SnapshotMapping().map(disabled, now: Self.now), records: ["pl_a": rebooted], unreadable: [], now: Self.now)
        #expect(frozen.slivers.first?.steps == [.setAttributes(["vref": "busybox", "cpu_share": "2", "initscript": "hello", "enabled": "0"])])
    }

    @Test func envelopeRoundTripKeepsRejectedAndErrors() throws {
        var snapshot = SliversSnapshot(timestamp: Self.now, slivers: [Self.sliver("pl_a", [("cpu_share", "2")])])
        snapshot.rejected = [.init(index: 1, name: "pl_b", reason: "bad"), .init(index: 2, name: nil, reason: "worse")]
        #expect(try SnapshotEnvelope.decode(SnapshotEnvelope.encode(snapshot)) == snapshot)
        #expect(throws: NodeError(.permissionDenied, "auth.hmac: refused", field: "provisioning")) {
            try SnapshotEnvelope.decode(SnapshotEnvelope.encode(NodeError(.permissionDenied, "auth.hmac: refused")))
        }
        var later = snapshot
        later.timestamp += 600
        #expect(later.sameContent(as: snapshot) && later != snapshot)
    }
}

extension DesiredSliver {
    static func sample(_ name: String) -> DesiredSliver {
        DesiredSliver(name: name, sliceID: 1, instantiation: "plc-instantiated", expires: Int(Int32.max), image: "busybox",
                      attributes: ["vref": "busybox"], keys: [], initscript: nil, otherAttributes: [:], notes: [], mayCreate: true)
    }
}
