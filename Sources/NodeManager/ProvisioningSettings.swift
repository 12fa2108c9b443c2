import PLCProtocol

/// `[provisioning]`: where the node's desired slivers come from and how often it looks.
/// conf/sliverd.toml documents every key; the defaults are PlanetLab NodeManager's (a poll every
/// 600 s plus 0-300 s of random jitter, so that a PLC restart is not followed by every node at once).
public struct ProvisioningSettings: Sendable, Equatable {
    public enum Source: String, Sendable {
        /// A GetSlivers-shaped JSON snapshot on disk: the embedded default of a standalone node.
        case file
        /// PLCAPI's GetSlivers, with the node key from `node_credentials`.
        case plc
    }

    public var source: Source = .file
    /// The snapshot file of the file source. "" with source = "file": provisioning is off and
    /// slivers are managed by hand with sliverctl.
    public var file = ""
    /// PLCAPI's URL: https (with `ca_cert`), or http to a loopback address only.
    public var plcURL = ""
    /// The only CA the https transport trusts (never the system store).
    public var caCert = ""
    /// plnode.txt with NODE_ID and NODE_KEY, root-only.
    public var nodeCredentials = "/etc/sliverd/plnode.txt"
    /// Seconds between polls, plus a random 0...jitter.
    public var period: Double = 600
    public var jitter: Double = 300
    /// Deadline of one whole fetch (GetSession + GetSlivers); the fetching process is killed after it.
    public var timeout: Double = 90
    /// Image of a sliver whose slice sets no `vref`; "" = the slice's GetSliceFamily.
    public var defaultImage = ""
    /// Where the `root` and `site_admin` keys of GetSlivers' `accounts` are written, one file per
    /// account (for sshd's AuthorizedKeysFile); "" = accounts are not applied.
    public var adminKeysDir = "/etc/sliverd/admin-keys"

    public init() {}

    /// True when the node has a desired-state source (a reconciler runs).
    public var isEnabled: Bool { source == .plc || !file.isEmpty }

    static let keys: Set<String> = ["source", "file", "plc_url", "ca_cert", "node_credentials", "period_s", "jitter_s",
                                    "timeout_s", "default_image", "admin_keys_dir"]

    /// Reads and validates the table; every error names the key.
    init(table: [String: TOMLDocument.Value]) throws(NodeError) {
        func string(_ key: String) throws(NodeError) -> String? {
            guard let v = table[key] else { return nil }
            guard case .string(let s) = v else { throw NodeError.invalid("provisioning.\(key)", "\(v)", "must be a string") }
            return s
        }
        /// "" or an absolute path without "..".
        func path(_ key: String) throws(NodeError) -> String? {
            guard let p = try string(key) else { return nil }
            guard p.isEmpty || (p.hasPrefix("/") && !p.split(separator: "/").contains("..")) else {
                throw NodeError.invalid("provisioning.\(key)", p, "must be an absolute path without ..")
            }
            return p
        }
        func seconds(_ key: String, _ range: ClosedRange<Double>) throws(NodeError) -> Double? {
            guard let v = table[key] else { return nil }
            let value: Double
            switch v {
            case .integer(let n): value = Double(n)
            case .float(let d): value = d
            default: throw NodeError.invalid("provisioning.\(key)", "\(v)", "must be a number of seconds")
            }
            guard range.contains(value) else {
                throw NodeError.invalid("provisioning.\(key)", "\(value)", "must be \(Int(range.lowerBound))-\(Int(range.upperBound)) seconds")
            }
            return value
        }
        if let v = try string("source") {
            guard let source = Source(rawValue: v) else { throw NodeError.invalid("provisioning.source", v, "must be file or plc") }
            self.source = source
        }
        if let v = try path("file") { file = v }
        if let v = try string("plc_url") { plcURL = v }
        if let v = try path("ca_cert") { caCert = v }
        if let v = try path("node_credentials") {
            guard !v.isEmpty else { throw NodeError.invalid("provisioning.node_credentials", v, "must be a path") }
            nodeCredentials = v
        }
        if let v = try seconds("period_s", 1...86400) { period = v }
        if let v = try seconds("jitter_s", 0...86400) { jitter = v }
        if let v = try seconds("timeout_s", 1...600) { timeout = v }
        if let v = try string("default_image") {
            if !v.isEmpty {
                do { try ImageName.validate(v) } catch { throw NodeError.invalid("provisioning.default_image", v, "not an image name") }
            }
            defaultImage = v
        }
        if let v = try path("admin_keys_dir") { adminKeysDir = v }
        try validate()
    }

    /// The checks that involve more than one key.
    func validate() throws(NodeError) {
        if !plcURL.isEmpty || source == .plc {
            guard !plcURL.isEmpty else {
                throw NodeError.invalid("provisioning.plc_url", plcURL, "required with source = \"plc\"")
            }
            let endpoint: PLCEndpoint
            do { endpoint = try PLCEndpoint(url: plcURL) } catch {
                throw NodeError(.invalidArgument, "invalid provisioning.plc_url: \(error.message)", field: "provisioning.plc_url")
            }
            if endpoint.scheme == .https && caCert.isEmpty {
                throw NodeError.invalid("provisioning.ca_cert", caCert, "required for an https plc_url (the node trusts only this CA)")
            }
        }
    }
}
