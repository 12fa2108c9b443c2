import SliverIsolation
import SliverSystem

/// The lifecycle of a sliver as the daemon persists it.
///
///     creating --(helper ok)--> running <--start/stop--> stopped
///        |                         |                        |
///        +--(failure: rolled back) +-------> destroying <---+--> (record removed)
///
/// `creating` and `destroying` are persisted before the work starts, so a daemon that dies in
/// the middle finds the half-done sliver at its next start and finishes the rollback or destroy.
public enum SliverState: String, Codable, Sendable {
    case creating, stopped, running, destroying
}

/// Everything the daemon knows about one sliver; one JSON file per sliver in the state dir.
public struct SliverRecord: Codable, Sendable, Equatable {
    /// Schema version of this record; readers refuse versions they do not know.
    public static let currentVersion = 1

    public var version: Int = SliverRecord.currentVersion
    public var name: String
    /// Stable numeric id: the ID-range slot, unique among live slivers.
    public var id: Int { idRange.slot }
    public var image: String
    public var imagePath: String
    public var attributes: SliceAttributes
    public var idRange: IDRange
    public var state: SliverState
    /// The sliver's init while running.
    public var initProcess: ProcessIdentity?
    public var createdAt: Double
    public var startedAt: Double?
    /// SSH public keys of the slice's users (absent in records written before keys existed).
    public var sshKeys: [String]?
    /// The provisioned initscript last run in this sliver (absent: none ran).
    public var initscript: InitscriptRun?

    public var keys: [String] { sshKeys ?? [] }
    /// Ports reserved on the node's public address (absent in older records).
    public var portReservations: [PortReservation]?
    /// A whole public address from network.address_pool (1:1 NAT), if assigned.
    public var poolAddress: String?

    public var ports: [PortReservation] { portReservations ?? [] }

    enum CodingKeys: String, CodingKey {
        case version, name, image, imagePath = "image_path", attributes, idRange = "id_range", state
        case initProcess = "init_process", createdAt = "created_at", startedAt = "started_at", sshKeys = "ssh_keys"
        case portReservations = "ports", poolAddress = "pool_address"
        case initscript
    }
}

/// Which initscript ran for which boot of a sliver: `start` runs once per boot (a new
/// `started_at`), `restart` when the code's hash changes. Kept in the record so a daemon restart
/// neither repeats nor forgets it.
public struct InitscriptRun: Codable, Sendable, Equatable {
    /// SHA-1 of the code that ran.
    public var hash: String
    /// The sliver's `started_at` when it ran.
    public var startedAt: Double?

    enum CodingKeys: String, CodingKey {
        case hash, startedAt = "started_at"
    }
}

/// A registered reference image.
public struct ImageRecord: Codable, Sendable, Equatable {
    public var name: String
    public var path: String
}
