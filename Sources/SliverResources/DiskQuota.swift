#if canImport(Glibc)
import Glibc
#endif
import SliverSystem

/// The storage backends that can bound a sliver's disk use ([storage] quota in the config).
public enum DiskQuotaKind: String, Sendable, Codable, CaseIterable {
    /// No quota: `<storage_dir>/<name>` is a plain directory; disk_max is stored, not enforced.
    case none
    /// Each sliver's directory is a btrfs subvolume whose level-0 qgroup has a referenced-bytes
    /// limit. No inode limit (btrfs has none).
    case btrfs
    /// ext4/XFS project quotas: the directory carries a project id (inherited by everything
    /// created below it) with block and inode hard limits.
    case project
}

/// A sliver's disk limit. nil = unlimited.
public struct DiskLimit: Sendable, Equatable {
    /// Hard limit on bytes (PLCAPI disk_max is in KiB).
    public var bytes: UInt64?
    /// Hard limit on inodes (where the backend has one: project quotas).
    public var inodes: UInt64?

    public init(bytes: UInt64? = nil, inodes: UInt64? = nil) {
        self.bytes = bytes
        self.inodes = inodes
    }
}

/// What a sliver's directory uses, as its quota backend accounts it.
public struct DiskUsage: Sendable, Equatable {
    public var bytes: UInt64
    public var limitBytes: UInt64?
    public var inodes: UInt64?
    public var inodeLimit: UInt64?

    public init(bytes: UInt64, limitBytes: UInt64? = nil, inodes: UInt64? = nil, inodeLimit: UInt64? = nil) {
        self.bytes = bytes
        self.limitBytes = limitBytes
        self.inodes = inodes
        self.inodeLimit = inodeLimit
    }
}

/// Makes, limits, measures and removes the top directory of a sliver (`<storage_dir>/<name>`,
/// which holds its overlay upper and work directories). `quotaID` is the sliver's stable
/// number on this node (the project id for project quotas; unused by the others).
public protocol DiskQuota: Sendable {
    var kind: DiskQuotaKind { get }
    /// Creates the directory, root-owned, mode 0700. Fails if it exists.
    func createDirectory(_ path: String, quotaID: UInt32) throws(ResourceError)
    /// Removes the directory and everything in it. Idempotent.
    func removeDirectory(_ path: String, quotaID: UInt32) throws(ResourceError)
    /// Sets (or, with nil fields, clears) the limit. Applies at once, also while the sliver writes.
    func setLimit(_ limit: DiskLimit, path: String, quotaID: UInt32) throws(ResourceError)
    /// nil when the backend does not measure.
    func usage(path: String, quotaID: UInt32) -> DiskUsage?
}

extension DiskQuota {
    /// A directory made the plain way: mkdir, then chmod (mkdir honours the umask).
    func makePlainDirectory(_ path: String) throws(ResourceError) {
        do {
            try FileSystem.makeDirectory(path, mode: 0o700)
        } catch {
            throw ResourceError(error)
        }
    }

    func removePlainTree(_ path: String) throws(ResourceError) {
        do {
            try FileSystem.removeTree(path)
        } catch {
            throw ResourceError(error)
        }
    }
}

public enum DiskQuotaBackend {
    /// The backend for `kind` on the filesystem of `storage`, after checking that the
    /// filesystem can do it (btrfs with quotas enabled; project quotas turned on).
    public static func open(_ kind: DiskQuotaKind, storage: String) throws(ResourceError) -> any DiskQuota {
        switch kind {
        case .none: return NoDiskQuota()
        case .btrfs: return try BtrfsQuota(storage: storage)
        case .project: return try ProjectQuota(storage: storage)
        }
    }
}

/// `quota = "none"`: plain directories, nothing enforced or measured (walking a tree to measure
/// it would cost I/O on every `show`).
public struct NoDiskQuota: DiskQuota {
    public let kind = DiskQuotaKind.none
    public init() {}
    public func createDirectory(_ path: String, quotaID: UInt32) throws(ResourceError) { try makePlainDirectory(path) }
    public func removeDirectory(_ path: String, quotaID: UInt32) throws(ResourceError) { try removePlainTree(path) }
    public func setLimit(_ limit: DiskLimit, path: String, quotaID: UInt32) throws(ResourceError) {}
    public func usage(path: String, quotaID: UInt32) -> DiskUsage? { nil }
}

/// Opens a directory O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC for an ioctl.
func openDirectory(_ path: String, stage: String) throws(ResourceError) -> Int32 {
    do {
        return try sysCall(stage, "open \(path)") { open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
    } catch {
        throw ResourceError(error)
    }
}
