#if canImport(Glibc)
import Glibc
#endif
import CSliverShim
import Foundation
import Logging
import PLCProtocol
import SliverSystem

/// What the provisioner needs from the event loop: watching descriptors (EPOLLIN; events on
/// them come back through `Provisioner.handle`) and forgetting them (closed by the loop).
protocol ProvisioningLoop: AnyObject {
    func watch(_ fd: Int32)
    func unwatch(_ fd: Int32)
}

/// Drives provisioning from the daemon's one event loop: one timerfd (not a timer per sliver,
/// not a thread) fires at the earliest of the next poll, a fetch deadline, a sliver's retry
/// time and the next expiry; a poll fetches the desired state in a child process (SnapshotFetch)
/// and applies it when the answer arrives.
///
/// - Start: the last good snapshot on disk is applied on the loop's first turn; the first poll
///   starts at the same time, and nothing waits for it.
/// - A poll that fails (PLC down, slow, garbage, wrong key) changes nothing on the node: it is
///   logged, and retried after 30 s, 60 s, ... (never later than period_s).
/// - A snapshot older than the last applied one is ignored.
/// - Polls: period_s + random 0..jitter_s after the previous one; `sliverctl sync` at once.
public final class Provisioner {
    public let settings: ProvisioningSettings
    let manager: SliverManager
    let store: SnapshotStore
    let mapping: SnapshotMapping
    let reconciler: Reconciler
    let fetchCommand: [String]
    let sourceSummary: String
    var log: Logger

    private weak var loop: (any ProvisioningLoop)?
    private var timerFD: Int32 = -1
    private var fetch: SnapshotFetch?
    private var initscripts: [Int32: (name: String, action: InitscriptAction)] = [:]
    /// The last good snapshot and the desired state mapped from it.
    private(set) var snapshot: SliversSnapshot?
    private(set) var desired: DesiredState?
    private var startupPending = true
    private var nextPollAt = 0.0
    private var pollFailures = 0
    private var lastPoll: (time: Double, outcome: String)?
    /// sliverctl sync: answered when the running fetch ends, or when the one after it ends.
    private var waiters: [(SyncReport) -> Void] = []
    private var nextWaiters: [(SyncReport) -> Void] = []
    /// The reconcile in progress (it runs in slices between other events), why it runs, the
    /// report of the poll that started it and the syncs waiting for that report.
    private var pass: Reconciler.Pass?
    private var passContext: (why: String, report: SyncReport?, waiters: [(SyncReport) -> Void])?

    /// `executable`: the sliverd binary, started as `executable --fetch-snapshot ...` per poll.
    public init(manager: SliverManager, executable: String, logger: Logger) throws(NodeError) {
        settings = manager.config.provisioning
        self.manager = manager
        log = logger
        store = SnapshotStore(stateDir: manager.config.stateDir)
        mapping = SnapshotMapping(defaultImage: settings.defaultImage)
        reconciler = Reconciler(manager: manager, adminKeysDir: settings.adminKeysDir, logger: logger)
        fetchCommand = [executable] + SnapshotFetchChild.arguments(settings, stateDir: manager.config.stateDir)
        sourceSummary = try DesiredStateSources.make(settings, stateDir: manager.config.stateDir).summary
        reconciler.onInitscript = { [unowned self] process, name, action in
            initscripts[process.pidfd] = (name, action)
            loop?.watch(process.pidfd)
        }
    }

    public var events: [ProvisioningEvent] { reconciler.events.events }

    /// Something another part of the daemon did to a sliver that `sliverctl events` should
    /// show (the daily byte cap): a notice event, logged with the sliver name.
    func note(_ sliver: String, _ reason: String) {
        reconciler.events.record(.notice, sliver, reason)
    }

    /// Registers the timer with the loop and loads the last good snapshot; the first turn of
    /// the loop applies it and starts the first poll.
    func attach(to loop: any ProvisioningLoop) throws(NodeError) {
        self.loop = loop
        timerFD = timerfd_create(CLOCK_MONOTONIC, Int32(TFD_CLOEXEC | TFD_NONBLOCK))
        guard timerFD >= 0 else { throw NodeError(SystemError(stage: "provisioning", attempted: "timerfd_create", errno: errno)) }
        loop.watch(timerFD)
        do {
            if let saved = try store.load() {
                snapshot = saved
                desired = mapping.map(saved, now: Int(Date().timeIntervalSince1970))
            }
        } catch {
            reconciler.events.record(.failure, "", "\(error.message): nothing is applied until the source answers")
        }
        log.info("provisioning from \(sourceSummary)", metadata: [
            "period_s": "\(settings.period)", "jitter_s": "\(settings.jitter)",
            "last_snapshot": "\(snapshot.map { String($0.timestamp) } ?? "none")"])
        nextPollAt = Monotonic.now()
        arm(at: Monotonic.now())
    }

    /// An event on one of the provisioning descriptors; false if the descriptor is not ours.
    @discardableResult
    func handle(_ fd: Int32) -> Bool {
        if fd == timerFD {
            var expirations: UInt64 = 0
            _ = read(timerFD, &expirations, 8)
            tick()
        } else if let fetch, fd == fetch.output {
            if fetch.read() {
                loop?.unwatch(fetch.output)
                self.fetch = nil
                finishPoll(fetch.finish(), forced: fetch.forced)
            }
        } else if let script = initscripts.removeValue(forKey: fd) {
            var status: Int32 = 0
            let done = sliver_pidfd_wait(fd, &status, 1) == 1
            loop?.unwatch(fd)
            let outcome = done ? "exited with status \(status)" : "ended"
            reconciler.events.record(done && status != 0 ? .failure : .initscript, script.name,
                                     "initscript \(script.action.rawValue) \(outcome)")
        } else {
            return false
        }
        rearm()
        return true
    }

    /// sliverctl sync: polls now (or right after the poll in flight, which may have started
    /// before the change the operator wants to see) and reports when that poll is applied.
    func sync(_ done: @escaping (SyncReport) -> Void) {
        if fetch != nil || pass != nil {
            nextWaiters.append(done)
        } else {
            waiters.append(done)
            startPoll(forced: true)
        }
        rearm()
    }

    // MARK: scheduling

    private func tick() {
        let now = Monotonic.now()
        if startupPending {
            startupPending = false
            if let desired { startPass(desired, force: false, why: "start: last good snapshot \(desired.timestamp)") }
        } else if pass != nil {
            continuePass()
        }
        if let fetch, now >= fetch.deadline {
            fetch.kill()
            loop?.unwatch(fetch.output)
            self.fetch = nil
            finishPoll(.failure(NodeError(.unavailable, "no answer from \(sourceSummary) within \(Int(settings.timeout)) s: fetch killed",
                                          field: "provisioning")), forced: fetch.forced)
        }
        // A poll, a retry or an expiry waits for the reconcile in progress to end.
        if fetch == nil && pass == nil && now >= nextPollAt {
            startPoll(forced: false)
        }
        let due = (reconciler.nextRetry.map { $0 <= now } ?? false) || expiryDue
        if due, pass == nil, let desired {
            startPass(desired, force: false, why: "retry or expiry")
        }
    }

    private var expiryDue: Bool {
        guard let next = desired?.nextExpiry else { return false }
        return next <= Int(Date().timeIntervalSince1970)
    }

    private func rearm() {
        // Between slices of a reconcile, a pause in which the loop serves what is waiting: a new
        // client needs two turns (accept, then its request), and a slice per turn would make it
        // wait for two or three slices.
        if pass != nil { return arm(at: Monotonic.now() + 0.02) }
        var next = fetch?.deadline ?? nextPollAt
        if let retry = reconciler.nextRetry { next = min(next, retry) }
        if let expiry = desired?.nextExpiry {
            next = min(next, Monotonic.now() + Double(expiry) - Date().timeIntervalSince1970)
        }
        arm(at: next)
    }

    private func arm(at time: Double) {
        // A zero it_value disarms a timerfd: at least 1 ms from now.
        let delay = max(time - Monotonic.now(), 0.001)
        var spec = itimerspec()
        spec.it_value.tv_sec = Int(delay)
        spec.it_value.tv_nsec = Int((delay - Double(Int(delay))) * 1e9)
        timerfd_settime(timerFD, 0, &spec, nil)
    }

    // MARK: polls

    private func startPoll(forced: Bool) {
        do {
            let started = try SnapshotFetch.start(fetchCommand, timeout: settings.timeout, forced: forced)
            fetch = started
            loop?.watch(started.output)
        } catch {
            finishPoll(.failure(error), forced: forced)
        }
    }

    private func finishPoll(_ result: Result<SliversSnapshot, NodeError>, forced: Bool) {
        let now = Monotonic.now()
        let answered = waiters
        waiters = []
        switch result {
        case .success(let fresh):
            pollFailures = 0
            nextPollAt = now + settings.period + Double.random(in: 0...settings.jitter)
            if let stale = apply(fresh, forced: forced, waiters: answered) {
                for done in answered { done(stale) }
            }
        case .failure(let error):
            pollFailures += 1
            let base = min(30, settings.period)
            nextPollAt = now + min(settings.period, base * pow(2, Double(min(pollFailures - 1, 20))))
            reconciler.events.record(.failure, "", "poll of \(sourceSummary) failed, node unchanged: \(error.message)")
            lastPoll = (Date().timeIntervalSince1970, "failed: \(error.message)")
            var outcome = SyncReport(timestamp: nil)
            outcome.error = error.message
            for done in answered { done(outcome) }
        }
        startQueuedPoll()
    }

    /// Syncs that arrived during a poll or a reconcile get a poll of their own afterwards.
    private func startQueuedPoll() {
        guard fetch == nil, pass == nil, !nextWaiters.isEmpty else { return }
        waiters = nextWaiters
        nextWaiters = []
        startPoll(forced: true)
    }

    /// A fetched snapshot: ignored if stale (the report is returned), else persisted (if its
    /// content changed) and a reconcile started, which answers `waiters` when it ends.
    private func apply(_ fresh: SliversSnapshot, forced: Bool, waiters: [(SyncReport) -> Void]) -> SyncReport? {
        var report = SyncReport(timestamp: fresh.timestamp)
        if let current = snapshot, fresh.timestamp < current.timestamp {
            report.stale = true
            reconciler.events.record(.poll, "", "stale snapshot ignored: timestamp \(fresh.timestamp) is older than the applied \(current.timestamp)")
            lastPoll = (Date().timeIntervalSince1970, "stale snapshot \(fresh.timestamp) ignored")
            return report
        }
        let changed = snapshot.map { !fresh.sameContent(as: $0) } ?? true
        if changed {
            do { try store.save(fresh) } catch {
                reconciler.events.record(.failure, "", "cannot persist the snapshot (applied anyway): \(error.message)")
            }
        }
        snapshot = fresh
        let mapped = mapping.map(fresh, now: Int(Date().timeIntervalSince1970))
        desired = mapped
        reconciler.events.record(.poll, "", changed ? "new snapshot \(fresh.timestamp): \(mapped.slivers.count) slivers wanted"
                                                    : "snapshot unchanged")
        report.applied = true
        lastPoll = (Date().timeIntervalSince1970, "applied snapshot \(fresh.timestamp)")
        // A reconcile still running from an older snapshot is replaced: the new one plans afresh.
        if pass != nil { finishPass(thenPoll: false) }
        startPass(mapped, force: forced, why: "poll", report: report, waiters: waiters)
        return nil
    }

    private func startPass(_ desired: DesiredState, force: Bool, why: String, report: SyncReport? = nil,
                           waiters: [(SyncReport) -> Void] = []) {
        pass = Reconciler.Pass(desired, force: force)
        passContext = (why, report, waiters)
        continuePass()
    }

    private func continuePass() {
        guard var current = pass else { return }
        reconciler.run(&current)
        pass = current
        if current.finished { finishPass() }
    }

    /// Ends the pass (finished, or replaced by a newer snapshot's): logs it, answers its syncs,
    /// and starts the poll queued syncs wait for.
    private func finishPass(thenPoll: Bool = true) {
        guard let done = pass, let context = passContext else { return }
        pass = nil
        passContext = nil
        let result = done.report
        if result != ReconcileReport() {
            log.info("reconciled (\(context.why))", metadata: [
                "created": "\(result.created)", "updated": "\(result.updated)", "started": "\(result.started)",
                "destroyed": "\(result.destroyed)", "failed": "\(result.failed)", "deferred": "\(result.deferred)"])
        }
        if var report = context.report {
            report.reconcile = result
            for answer in context.waiters { answer(report) }
        }
        if thenPoll { startQueuedPoll() }
    }

    // MARK: plan

    /// What the next reconcile would do with the last good snapshot, without doing it.
    public func planView() -> PlanView {
        var view = PlanView(source: sourceSummary, fetching: fetch != nil)
        view.snapshotTimestamp = snapshot?.timestamp
        view.lastPoll = lastPoll.map { "\(SnapshotMapping.time(Int($0.time))) \($0.outcome)" }
        view.nextPollInSeconds = fetch == nil ? max(0, nextPollAt - Monotonic.now()) : nil
        guard let desired else { return view }
        let plan = ReconcilePlanner.plan(desired, records: manager.records, unreadable: manager.unreadable,
                                         now: Int(Date().timeIntervalSince1970))
        let now = Monotonic.now()
        view.actions = plan.slivers.map { sliver in
            PlanView.Action(sliver: sliver.name, steps: sliver.steps.map(PlanView.describe), reason: sliver.reason,
                            retryInSeconds: reconciler.backoff[sliver.name].map { max(0, $0.retryAt - now) },
                            lastError: reconciler.backoff[sliver.name]?.error)
        }
        view.skipped = plan.skipped.merging(desired.held.filter { manager.records[$0.key] == nil }) { a, _ in a }
        if let blocked = desired.destroyBlocked { view.skipped[""] = "no sliver is destroyed: \(blocked)" }
        view.otherAttributes = desired.slivers.filter { !$0.value.otherAttributes.isEmpty }.mapValues(\.otherAttributes)
        view.notes = desired.slivers.filter { !$0.value.notes.isEmpty }.mapValues(\.notes)
        return view
    }
}

/// The answer to `sliverctl sync`: the poll's outcome (a failed poll is an answer too: `error`).
public struct SyncReport: Codable, Sendable {
    /// The fetched snapshot's timestamp.
    public var timestamp: Int?
    /// The snapshot was applied (not stale, fetch succeeded).
    public var applied = false
    public var stale = false
    public var error: String?
    public var reconcile: ReconcileReport?

    init(timestamp: Int?) { self.timestamp = timestamp }
}
