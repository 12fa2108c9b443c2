/// The answer to `sliverctl plan`: the provisioning status and what the next reconcile would do
/// with the last good snapshot (a newer snapshot from the next poll may of course differ).
public struct PlanView: Codable, Sendable {
    public struct Action: Codable, Sendable {
        public var sliver: String
        public var steps: [String]
        public var reason: String
        /// Set while the sliver waits for its retry after a failure.
        public var retryInSeconds: Double?
        public var lastError: String?

        enum CodingKeys: String, CodingKey {
            case sliver, steps, reason, retryInSeconds = "retry_in_s", lastError = "last_error"
        }
    }

    public var source: String
    public var fetching: Bool
    public var snapshotTimestamp: Int?
    public var lastPoll: String?
    public var nextPollInSeconds: Double?
    public var actions: [Action] = []
    /// Slivers (or snapshot entries) left alone, with why.
    public var skipped: [String: String] = [:]
    /// Tags Sliverd does not implement, per sliver (kept, not applied).
    public var otherAttributes: [String: [String: [String]]] = [:]
    public var notes: [String: [String]] = [:]

    enum CodingKeys: String, CodingKey {
        case source, fetching, snapshotTimestamp = "snapshot_timestamp", lastPoll = "last_poll"
        case nextPollInSeconds = "next_poll_in_s", actions, skipped, otherAttributes = "other_attributes", notes
    }

    init(source: String, fetching: Bool) {
        self.source = source
        self.fetching = fetching
    }

    static func describe(_ step: SliverPlan.Step) -> String {
        func list(_ attributes: [String: String]) -> String {
            attributes.isEmpty ? "(defaults)" : attributes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
        switch step {
        case .create(let want): return "create image \(want.image), \(want.keys.count) key(s), \(list(want.attributes))"
        case .setAttributes(let attributes): return "set attributes \(list(attributes))"
        case .setKeys(let keys): return "set \(keys.count) key(s)"
        case .start: return "start"
        case .initscript(let action, let script): return "initscript \(action.rawValue)" + (script.map { " \($0.name)" } ?? "")
        case .destroy: return "destroy"
        }
    }
}
