#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import SliverSystem

/// What one reconcile did.
public struct ReconcileReport: Codable, Sendable, Equatable {
    public var created = 0, updated = 0, started = 0, destroyed = 0, failed = 0
    /// Slivers whose retry time (backoff after a failure) has not come yet.
    public var deferred = 0
    /// name -> error of this round's failures.
    public var failures: [String: String] = [:]

    public init() {}
}

/// Applies plans to the node through SliverManager. Each sliver's steps run in order and stop
/// at the first failure; a failure is recorded, logged and retried later with exponential
/// backoff (5 s, 10 s, ... at most 10 min), and never keeps the other slivers from being handled.
/// Runs on the daemon's event loop, like every SliverManager call, in slices (Pass).
final class Reconciler {
    struct Backoff {
        var failures: Int
        /// CLOCK_MONOTONIC seconds.
        var retryAt: Double
        var error: String
    }

    static let firstRetry = 5.0
    static let maxRetry = 600.0

    let manager: SliverManager
    var events: ProvisioningEvents
    let adminKeys: AdminKeys?
    private(set) var backoff: [String: Backoff] = [:]
    /// What was last reported per sliver (held, notes, other attributes): reported again only
    /// when it changes, so a poll of the same snapshot adds no event.
    private var reported: [String: String] = [:]
    /// An initscript process was started: the event loop watches it.
    var onInitscript: ((SpawnedProcess, String, InitscriptAction) -> Void)?

    init(manager: SliverManager, adminKeysDir: String, logger: Logger) {
        self.manager = manager
        events = ProvisioningEvents(logger: logger)
        adminKeys = adminKeysDir.isEmpty ? nil : AdminKeys(directory: adminKeysDir)
    }

    /// The earliest pending retry (CLOCK_MONOTONIC), if any.
    var nextRetry: Double? { backoff.values.map(\.retryAt).min() }

    /// One reconcile of a desired state. It runs in slices of at most `Reconciler.slice` seconds
    /// of work, so that the event loop serves sliverctl, vsh and init exits in between: creating
    /// a thousand slivers takes half a minute. Each slice plans afresh from the records; each
    /// sliver is handled at most once per pass.
    struct Pass {
        let desired: DesiredState
        /// sliverctl sync: failed slivers are retried now, whatever their backoff.
        let force: Bool
        var report = ReconcileReport()
        var handled: Set<String> = []
        var started = false
        var finished = false

        init(_ desired: DesiredState, force: Bool) {
            self.desired = desired
            self.force = force
        }
    }

    static let slice = 0.2

    /// Runs the next slice of a pass; `pass.finished` tells whether anything is left.
    func run(_ pass: inout Pass) {
        let start = Monotonic.now()
        let plan = ReconcilePlanner.plan(pass.desired, records: manager.records, unreadable: manager.unreadable,
                                         now: Int(Date().timeIntervalSince1970))
        if !pass.started {
            pass.started = true
            reportChanges(pass.desired, plan)
            let planned = Set(plan.slivers.map(\.name))
            // A sliver that needs nothing any more (fixed by hand, or no longer wanted) has no retry.
            for name in backoff.keys where !planned.contains(name) { backoff[name] = nil }
        }
        for sliver in plan.slivers where !pass.handled.contains(sliver.name) {
            let now = Monotonic.now()
            if now - start > Self.slice { return }
            pass.handled.insert(sliver.name)
            if !pass.force, let pending = backoff[sliver.name], pending.retryAt > now {
                pass.report.deferred += 1
                continue
            }
            do {
                try execute(sliver, &pass.report)
                backoff[sliver.name] = nil
            } catch {
                let failures = (backoff[sliver.name]?.failures ?? 0) + 1
                let delay = min(Self.maxRetry, Self.firstRetry * pow(2, Double(failures - 1)))
                backoff[sliver.name] = Backoff(failures: failures, retryAt: now + delay, error: error.message)
                pass.report.failed += 1
                pass.report.failures[sliver.name] = error.message
                events.record(.failure, sliver.name, "\(sliver.reason): \(error.message) (attempt \(failures), retry in \(Int(delay)) s)")
            }
        }
        if let adminKeys {
            do {
                let (changes, notes) = try adminKeys.apply(pass.desired.accounts)
                for change in changes { events.record(.update, "", "admin keys: \(change)") }
                note("accounts", notes.joined(separator: "; "))
            } catch {
                events.record(.failure, "", "admin keys in \(adminKeys.directory): \(error.message)")
            }
        }
        pass.finished = true
    }

    private func execute(_ plan: SliverPlan, _ report: inout ReconcileReport) throws(NodeError) {
        let name = plan.name
        var kind: ProvisioningEvent.Kind = .initscript
        for step in plan.steps {
            switch step {
            case .create(let want):
                _ = try manager.create(name: name, image: want.image, attributes: want.attributes, start: true, keys: want.keys)
                kind = .create
                report.created += 1
            case .setAttributes(let attributes):
                _ = try manager.set(name, attributes: attributes, replacing: true)
                if kind == .initscript { kind = .update }
            case .setKeys(let keys):
                _ = try manager.setKeys(name, keys)
                if kind == .initscript { kind = .update }
            case .start:
                _ = try manager.start(name)
                kind = .start
                report.started += 1
            case .initscript(let action, let script):
                let process = try InitscriptRunner.run(manager, name, action, code: script?.code)
                onInitscript?(process, name, action)
                let startedAt = manager.records[name]?.startedAt
                try manager.noteInitscript(name, script.map { InitscriptRun(hash: $0.hash, startedAt: startedAt) })
            case .destroy:
                try manager.destroy(name)
                kind = .destroy
                report.destroyed += 1
            }
        }
        if kind == .update || kind == .initscript { report.updated += 1 }
        events.record(kind, name, plan.reason)
    }

    /// Held entries, notes and attributes Sliverd does not implement: one notice per change.
    private func reportChanges(_ desired: DesiredState, _ plan: ReconcilePlan) {
        var current: [String: String] = [:]
        for (name, reason) in desired.held { current[name] = "entry not applied: \(reason)" }
        for (name, want) in desired.slivers {
            var parts = want.notes
            if !want.otherAttributes.isEmpty {
                let tags = want.otherAttributes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.joined(separator: ","))" }
                parts.append("attributes not implemented by Sliverd, kept: \(tags.joined(separator: " "))")
            }
            if !parts.isEmpty { current[name] = parts.joined(separator: "; ") }
        }
        for (name, reason) in plan.skipped where current[name] == nil { current[name] = reason }
        if let blocked = desired.destroyBlocked { current[""] = "no sliver is destroyed: \(blocked)" }
        for (name, text) in current.sorted(by: { $0.key < $1.key }) { note(name, text) }
        for name in reported.keys where current[name] == nil && name != "accounts" { reported[name] = nil }
    }

    private func note(_ name: String, _ text: String) {
        guard reported[name] != text else { return }
        reported[name] = text.isEmpty ? nil : text
        if !text.isEmpty { events.record(.notice, name == "accounts" ? "" : name, text) }
    }
}

/// CLOCK_MONOTONIC in seconds: schedules and deadlines that a clock change cannot move.
enum Monotonic {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
