import Foundation
import SliverSystem

/// The daily byte caps of all slivers (PlanetLab's bwmon), one pass at a time from the daemon's
/// event loop: no thread, no timer per sliver. Accounts are kept by slice name in
/// `<state_dir>/bwmon.json` (replaced atomically), including those of destroyed slices until
/// their period ends (PlanetLab's "deaddb"): a slice destroyed and re-created to get around its
/// cap finds its day's usage waiting.
final class ByteCapMonitor {
    let path: String
    private(set) var accounts: [String: ByteAccount] = [:]
    /// What is on disk, to write only when something changed.
    private var saved: [String: ByteAccount] = [:]

    /// A change of a sliver's cap for the log and the provisioning events.
    struct Change: Equatable {
        var sliver: String
        /// The new ceiling in bit/s, nil when the cap is lifted.
        var cap: UInt64?
        var reason: String
    }

    /// Why the saved accounts could not be read, if they could not (for the caller's log).
    private(set) var loadProblem: String?

    init(stateDir: String) {
        path = stateDir + "/bwmon.json"
        guard FileSystem.exists(path) else { return }
        do {
            accounts = try JSONDecoder().decode([String: ByteAccount].self, from: Data(try FileSystem.readFile(path)))
            saved = accounts
        } catch {
            // Lost accounting is better than a node that cannot start: the accounting begins
            // anew (the next write replaces the file), and the caller says so in its log.
            loadProblem = "cannot read \(path): \(error); byte accounting starts anew"
        }
    }

    func account(_ name: String) -> ByteAccount? { accounts[name] }

    /// The sliver's class was just made (its counter is zero); opens an account if it has none.
    func classCreated(_ name: String, now: Double) {
        var account = accounts[name] ?? ByteAccount(periodStart: now)
        account.resetIfOver(now: now, counter: 0)
        account.classCreated()
        accounts[name] = account
    }

    /// The sliver's class is about to go: its last reading is counted, and the next class
    /// starts from zero.
    func classRemoved(_ name: String, counter: UInt64?, now: Double) {
        guard var account = accounts[name] else { return }
        if let counter { account.record(counter: counter, now: now) }
        account.classCreated()
        accounts[name] = account
    }

    /// One pass: counts every running sliver's counter (slice name -> bytes of its class), works
    /// out the cap each needs, drops accounts of slices that no longer exist once their period
    /// is over, and writes the accounts when they changed. Returns the caps that changed.
    func pass(now: Double, counters: [String: UInt64], allocations: [String: LinkAllocation],
              existing: Set<String>) -> [Change] {
        var changes: [Change] = []
        for (name, counter) in counters.sorted(by: { $0.key < $1.key }) {
            guard let allocation = allocations[name] else { continue }
            var account = accounts[name] ?? {
                // A class with no account (the state file was lost): count from this reading on.
                var fresh = ByteAccount(periodStart: now)
                fresh.lastCounter = counter
                return fresh
            }()
            // (A new period clears the cap in record: compare with the one in force before.)
            let before = account.cap
            account.record(counter: counter, now: now)
            let cap = account.wantedCap(allocation, now: now)
            if cap != before {
                let sent = "sent \(account.usedBytes / 1024) KiB since \(Self.timestamp(account.periodStart))"
                let reason = cap.map { "net cap: \(sent), past net_thresh_kbyte \(allocation.thresholdBytes / 1024) of net_max_kbyte \(allocation.maxBytes / 1024); ceil \($0 / 1000) kbit/s until \(Self.timestamp(account.periodEnd))" }
                    ?? "net cap lifted: \(sent); ceil back to \(allocation.maxRate / 1000) kbit/s"
                // Small moves of a cap in force (each pass spreads what is left anew) are not events.
                if before == nil || cap == nil { changes.append(Change(sliver: name, cap: cap, reason: reason)) }
            }
            account.cap = cap
            accounts[name] = account
        }
        for (name, account) in accounts where !existing.contains(name) && now >= account.periodEnd {
            accounts[name] = nil
        }
        return changes
    }

    /// Writes the accounts if they changed since the last write.
    func save() throws(NodeError) {
        guard accounts != saved else { return }
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try FileSystem.writeAtomically(path, Array(try encoder.encode(accounts)), mode: 0o600)
            saved = accounts
        } catch let error as SystemError {
            throw NodeError(error)
        } catch {
            throw NodeError(.internal, "encode \(path): \(error)")
        }
    }

    static func timestamp(_ seconds: Double) -> String {
        ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: seconds))
    }
}
