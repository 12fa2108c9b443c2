import Foundation
import Logging

/// One thing the reconciler did or failed to do; `sliverctl events` lists the recent ones.
public struct ProvisioningEvent: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case create, update, start, destroy, initscript, failure
        /// A poll: a snapshot applied, a stale one ignored, a fetch that failed.
        case poll
        /// Something the operator should know that is not a failure (held entry, ignored account).
        case notice
    }

    /// Seconds since the epoch (of the last occurrence, when `count` > 1).
    public var time: Double
    public var kind: Kind
    /// The sliver, or "" for node-wide events (polls, accounts).
    public var sliver: String
    public var reason: String
    /// How many times in a row the same event happened (a PLC outage is one line, not hundreds).
    public var count: Int
}

/// A bounded, in-memory log of provisioning events (lost at a restart: the daemon's log on
/// stderr/the journal has every line). Every event is also logged with the sliver name and reason.
public struct ProvisioningEvents: Sendable {
    public static let capacity = 256
    public private(set) var events: [ProvisioningEvent] = []
    var log: Logger

    init(logger: Logger) { log = logger }

    mutating func record(_ kind: ProvisioningEvent.Kind, _ sliver: String, _ reason: String) {
        let now = Date().timeIntervalSince1970
        var metadata: Logger.Metadata = ["event": "\(kind.rawValue)", "reason": "\(reason)"]
        if !sliver.isEmpty { metadata["sliver"] = "\(sliver)" }
        if let last = events.last, last.kind == kind, last.sliver == sliver, last.reason == reason {
            events[events.count - 1].count += 1
            events[events.count - 1].time = now
            // Repeats are logged at debug level; a repeated failure (PLC down for hours) also
            // as a reminder at powers of two, so the log backs off as the outage goes on.
            let count = events[events.count - 1].count
            if kind == .failure && count & (count - 1) == 0 {
                log.warning("provisioning: same event again (\(count) times)", metadata: metadata)
            } else {
                log.debug("provisioning: same event again (\(count) times)", metadata: metadata)
            }
            return
        }
        events.append(ProvisioningEvent(time: now, kind: kind, sliver: sliver, reason: reason, count: 1))
        if events.count > Self.capacity { events.removeFirst(events.count - Self.capacity) }
        switch kind {
        case .failure: log.error("provisioning: \(kind.rawValue)", metadata: metadata)
        case .notice: log.warning("provisioning: \(kind.rawValue)", metadata: metadata)
        default: log.info("provisioning: \(kind.rawValue)", metadata: metadata)
        }
    }
}
