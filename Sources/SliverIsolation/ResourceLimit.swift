/// One setrlimit(2) limit applied to every process of a sliver. nil means RLIM_INFINITY.
public struct ResourceLimit: Codable, Sendable, Equatable {
    /// The names the helper accepts (setrlimit's RLIMIT_* without the prefix, lower case).
    public static let resources: Set<String> = [
        "cpu", "fsize", "data", "stack", "core", "rss", "nproc", "nofile", "memlock", "as", "locks",
        "sigpending", "msgqueue", "nice", "rtprio",
    ]

    public var resource: String
    public var soft: UInt64?
    public var hard: UInt64?

    public init(resource: String, soft: UInt64?, hard: UInt64?) {
        self.resource = resource
        self.soft = soft
        self.hard = hard
    }

    var helperArgument: String {
        "\(resource)=\(soft.map(String.init) ?? "unlimited"):\(hard.map(String.init) ?? "unlimited")"
    }
}
