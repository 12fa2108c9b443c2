import ArgumentParser
import Foundation
import NodeManager

/// sliverctl sync: poll the desired-state source now and wait until the answer is applied.
struct Sync: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sync", 
        abstract: "Poll the provisioning source (PLC or file) now and apply the answer.",
        discussion: "Exits 1 when the poll failed (the node is then unchanged).")
    @OptionGroup var connection: Connection
    @Flag var json = false

    func run() throws {
        let data = connection.raw(ControlRequest(op: "sync"))
        if json { printJSON(data) }
        let report = try JSONDecoder().decode(SyncReport.self, from: data)
        if let error = report.error {
            if !json { FileHandle.standardError.write(Data("sliverctl: poll failed, node unchanged: \(error)\n".utf8)) }
            throw ExitCode(1)
        }
        guard !json else { return }
        if report.stale {
            print("snapshot \(report.timestamp ?? 0) is older than the applied one: ignored")
            return
        }
        let r = report.reconcile ?? ReconcileReport()
        print("snapshot \(report.timestamp ?? 0) applied: \(r.created) created, \(r.updated) updated, \(r.started) started, "
              + "\(r.destroyed) destroyed, \(r.failed) failed")
        for (name, error) in r.failures.sorted(by: { $0.key < $1.key }) { print("  failed \(name): \(error)") }
    }
}

/// sliverctl plan: what the next reconcile would do, without doing it.
struct Plan: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plan", 
        abstract: "Show what the next reconcile would do with the last good snapshot (nothing is changed).")
    @OptionGroup var connection: Connection
    @Flag var json = false

    func run() throws {
        let data = connection.raw(ControlRequest(op: "plan"))
        if json { printJSON(data); return }
        let plan = try JSONDecoder().decode(PlanView.self, from: data)
        print("source:        \(plan.source)")
        print("snapshot:      \(plan.snapshotTimestamp.map(String.init) ?? "none yet")")
        print("last poll:     \(plan.lastPoll ?? "none yet")")
        print("next poll:     \(plan.fetching ? "in progress" : plan.nextPollInSeconds.map { "in \(Int($0.rounded())) s" } ?? "-")")
        if plan.actions.isEmpty { print("\nnothing to do: the node matches the snapshot") }
        for action in plan.actions {
            print("\n\(action.sliver): \(action.reason)")
            for step in action.steps { print("  - \(step)") }
            if let error = action.lastError {
                print("  (failed before: \(error); retry in \(Int(action.retryInSeconds ?? 0)) s)")
            }
        }
        if !plan.skipped.isEmpty { print("\nleft alone:") }
        for (name, reason) in plan.skipped.sorted(by: { $0.key < $1.key }) { print("  \(name.isEmpty ? "*" : name): \(reason)") }
        if !plan.otherAttributes.isEmpty { print("\nattributes Sliverd does not implement (kept, not applied):") }
        for (name, tags) in plan.otherAttributes.sorted(by: { $0.key < $1.key }) {
            print("  \(name): " + tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.joined(separator: ","))" }.joined(separator: " "))
        }
        for (name, notes) in plan.notes.sorted(by: { $0.key < $1.key }) {
            for note in notes { print("  note \(name): \(note)") }
        }
    }
}

/// sliverctl events: the recent provisioning events (in memory, the last 256).
struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "events", abstract: "Show recent provisioning events (create, update, destroy, failures, polls).")
    @OptionGroup var connection: Connection
    @Flag var json = false

    func run() throws {
        let data = connection.raw(ControlRequest(op: "events"))
        if json { printJSON(data); return }
        let formatter = ISO8601DateFormatter()
        for event in try JSONDecoder().decode([ProvisioningEvent].self, from: data) {
            let when = formatter.string(from: Date(timeIntervalSince1970: event.time))
            let repeats = event.count > 1 ? " (x\(event.count))" : ""
            print("\(when) \(event.kind.rawValue) \(event.sliver.isEmpty ? "-" : event.sliver): \(event.reason)\(repeats)")
        }
    }
}
