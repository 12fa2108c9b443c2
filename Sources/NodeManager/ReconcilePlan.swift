/// What the reconciler will do to one sliver, in order. A failing step ends that sliver's
/// steps for this round; other slivers are not affected.
public struct SliverPlan: Sendable, Equatable {
    public enum Step: Sendable, Equatable {
        case create(DesiredSliver)
        /// Replace the attributes (live where the kernel allows; no restart).
        case setAttributes([String: String])
        /// Replace the SSH keys (live: sshd asks sliverd at each login).
        case setKeys([String])
        case start
        case initscript(InitscriptAction, DesiredSliver.Initscript?)
        case destroy
    }

    public var name: String
    public var steps: [Step]
    /// Why, for the plan and the event log: "new in the snapshot", "cpu_share 2 -> 5", "expired at ...".
    public var reason: String
}

/// `start SLICE` once per boot, `restart SLICE` when the code changed, `stop SLICE` (and the
/// script removed) when the slice no longer has one.
public enum InitscriptAction: String, Sendable {
    case start, restart, stop
}

public struct ReconcilePlan: Sendable {
    /// Destroys first (they free ID ranges and names), then the rest by name.
    public var slivers: [SliverPlan] = []
    /// Slivers left alone this round, with why (held entry, unreadable record, busy, ...).
    public var skipped: [String: String] = [:]

    public var isEmpty: Bool { slivers.isEmpty }
}

/// Compares the desired state with the node's records. Pure and cheap (a dictionary lookup and
/// a few comparisons per sliver, no system call): `sliverctl plan` shows exactly this, and a
/// node that matches its snapshot yields an empty plan.
public enum ReconcilePlanner {
    public static func plan(_ desired: DesiredState, records: [String: SliverRecord], unreadable: Set<String>, now: Int) -> ReconcilePlan {
        var plan = ReconcilePlan()
        var destroys: [SliverPlan] = []
        var others: [SliverPlan] = []
        for name in unreadable where desired.slivers[name] != nil || records[name] != nil {
            plan.skipped[name] = "its record is unreadable: left alone until an operator fixes or removes it"
        }
        for (name, want) in desired.slivers where !unreadable.contains(name) {
            if want.expires <= now {
                if records[name] != nil {
                    destroys.append(SliverPlan(name: name, steps: [.destroy], reason: "expired at \(SnapshotMapping.time(want.expires))"))
                }
                continue
            }
            guard let record = records[name] else {
                if want.mayCreate {
                    var steps: [SliverPlan.Step] = [.create(want)]
                    if let script = want.initscript, want.attributes["enabled"] != "0" { steps.append(.initscript(.start, script)) }
                    others.append(SliverPlan(name: name, steps: steps, reason: "new in the snapshot"))
                } else {
                    plan.skipped[name] = "instantiation \(want.instantiation): created only by its controller, not by the reconciler"
                }
                continue
            }
            if let update = self.update(record, want) { others.append(update) }
        }
        for (name, record) in records where desired.slivers[name] == nil && !unreadable.contains(name) {
            if let reason = desired.held[name] {
                plan.skipped[name] = "kept as it is: \(reason)"
            } else if let blocked = desired.destroyBlocked {
                plan.skipped[name] = "not destroyed: \(blocked)"
            } else if record.state == .creating {
                plan.skipped[name] = "busy (creating): the next daemon start rolls it back"
            } else {
                destroys.append(SliverPlan(name: name, steps: [.destroy], reason: desired.unwanted[name] ?? "not in the snapshot"))
            }
        }
        plan.slivers = destroys.sorted { $0.name < $1.name } + others.sorted { $0.name < $1.name }
        return plan
    }

    /// The steps that bring an existing sliver to what is wanted, or nil when it matches.
    static func update(_ record: SliverRecord, _ want: DesiredSliver) -> SliverPlan? {
        guard record.state == .running || record.state == .stopped else { return nil }
        var steps: [SliverPlan.Step] = []
        var reasons: [String] = []
        if record.attributes.values != want.attributes {
            steps.append(.setAttributes(want.attributes))
            reasons.append(attributeChanges(record.attributes.values, want.attributes))
        }
        if record.keys != want.keys {
            steps.append(.setKeys(want.keys))
            reasons.append("keys \(record.keys.count) -> \(want.keys.count)")
        }
        let starting = record.state == .stopped
        if starting {
            steps.append(.start)
            reasons.append("stopped")
        }
        if want.attributes["enabled"] != "0" {
            // A boot the initscript has not seen yet: a new start (here or by recovery after a reboot).
            let unseenBoot = starting || record.initscript?.startedAt != record.startedAt
            if let script = want.initscript {
                if record.initscript == nil || unseenBoot {
                    steps.append(.initscript(.start, script))
                    reasons.append("initscript \(script.name) start")
                } else if record.initscript?.hash != script.hash {
                    steps.append(.initscript(.restart, script))
                    reasons.append("initscript \(script.name) changed")
                }
            } else if record.initscript != nil {
                steps.append(.initscript(.stop, nil))
                reasons.append("initscript removed")
            }
        }
        guard !steps.isEmpty else { return nil }
        return SliverPlan(name: record.name, steps: steps, reason: reasons.joined(separator: "; "))
    }

    static func attributeChanges(_ old: [String: String], _ new: [String: String]) -> String {
        var parts: [String] = []
        for key in Set(old.keys).union(new.keys).sorted() where old[key] != new[key] {
            switch (old[key], new[key]) {
            case (nil, let n?): parts.append("\(key) = \(n)")
            case (let o?, nil): parts.append("\(key) \(o) -> default")
            case (let o?, let n?): parts.append("\(key) \(o) -> \(n)")
            default: break
            }
        }
        return parts.joined(separator: ", ")
    }
}
