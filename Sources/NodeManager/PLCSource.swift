#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PLCProtocol
import SliverSystem

/// GetSlivers from PLC: the node key from plnode.txt obtains a session (GetSession, HMAC), the
/// session authenticates GetSlivers, and a refused session is renewed once (PLCClient). The
/// session key is kept in `<state_dir>/provisioning/plc-session` (root only, 0600), as
/// NodeManager kept /etc/planetlab/session, so a daemon restart does not cost a GetSession and
/// does not invalidate the session of a fetch still in flight.
public final class PLCSource: DesiredStateSource {
    public let settings: ProvisioningSettings
    public let endpoint: PLCEndpoint
    public let sessionFile: String

    public init(settings: ProvisioningSettings, stateDir: String) throws(NodeError) {
        self.settings = settings
        do { endpoint = try PLCEndpoint(url: settings.plcURL) } catch { throw NodeError(error) }
        sessionFile = ProvisioningPaths(stateDir: stateDir).session
    }

    public var summary: String { "plc \(endpoint.url)" }

    public func fetch() throws(NodeError) -> SliversSnapshot {
        // Read at every fetch: a node key replaced on disk is used without a daemon restart.
        let credentials: NodeCredentials
        let transport: any PLCTransport
        do {
            credentials = try NodeCredentials.load(path: settings.nodeCredentials)
            transport = try PLCTransports.make(endpoint, caCert: settings.caCert, timeout: settings.timeout)
        } catch {
            throw NodeError(error)
        }
        let saved = loadSession()
        var client = PLCClient(transport: transport, credentials: credentials, session: saved)
        defer { if client.session != saved { saveSession(client.session) } }
        do {
            return try client.getSlivers()
        } catch {
            throw NodeError(error)
        }
    }

    /// The saved session, if the file is a regular file only root can read; anything else is
    /// ignored (and replaced by the next save).
    func loadSession() -> String? {
        let fd = open(sessionFile, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_uid == 0, st.st_mode & 0o077 == 0,
              let text = try? FileSystem.readString(sessionFile) else { return nil }
        let session = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return session.isEmpty ? nil : session
    }

    func saveSession(_ session: String?) {
        guard let session else {
            unlink(sessionFile)
            return
        }
        try? FileSystem.makeDirectories(FileSystem.parentDirectory(sessionFile), mode: 0o700)
        try? FileSystem.writeAtomically(sessionFile, Array((session + "\n").utf8), mode: 0o600)
    }
}

/// Files of the provisioning state, all under `<state_dir>/provisioning/` (0700).
struct ProvisioningPaths {
    let directory: String

    init(stateDir: String) { directory = stateDir + "/provisioning" }

    /// The last good snapshot, applied at start before PLC answers.
    var lastSnapshot: String { directory + "/last-snapshot.json" }
    var session: String { directory + "/plc-session" }
}
