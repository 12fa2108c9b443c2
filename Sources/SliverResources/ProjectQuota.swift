#if canImport(Glibc)
import Glibc
#endif
import CSliverShim
import SliverSystem

/// The kernel calls of project quotas. The seam exists because the test machines' kernel has
/// no ext4/XFS project quota support: the backend's logic is tested against a stand-in.
public protocol ProjectQuotaKernel: Sendable {
    /// Succeeds when project quotas are on for the filesystem of `path` (quotactl Q_GETINFO).
    func checkEnabled(_ path: String) throws(SystemError)
    /// FS_IOC_FSSETXATTR: project id + FS_XFLAG_PROJINHERIT on a directory.
    func setProject(_ path: String, _ id: UInt32) throws(SystemError)
    func project(of path: String) throws(SystemError) -> UInt32
    /// quotactl Q_SETQUOTA PRJQUOTA: hard (and soft) limits; 0 = none.
    func setLimits(_ storage: String, id: UInt32, blockKiB: UInt64, inodes: UInt64) throws(SystemError)
    /// quotactl Q_GETQUOTA PRJQUOTA.
    func usage(_ storage: String, id: UInt32) throws(SystemError) -> (bytes: UInt64, inodes: UInt64, blockKiB: UInt64, inodeLimit: UInt64)
}

/// The real kernel: ioctls on the directory, quotactl_fd(2) (5.14+) on the storage directory, so
/// no block device has to be looked up.
public struct LinuxProjectQuotaKernel: ProjectQuotaKernel {
    public init() {}

    @discardableResult
    private func withDirectory<T>(_ path: String, _ body: (Int32) throws(SystemError) -> T) throws(SystemError) -> T {
        let fd = try sysCall("storage.project", "open \(path)") { open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        defer { close(fd) }
        return try body(fd)
    }

    public func checkEnabled(_ path: String) throws(SystemError) {
        try withDirectory(path) { fd throws(SystemError) in
            try sysCall("storage.project", "quotactl_fd Q_GETINFO PRJQUOTA on \(path)") { sliver_quota_project_enabled(fd) }
        }
    }

    public func setProject(_ path: String, _ id: UInt32) throws(SystemError) {
        try withDirectory(path) { fd throws(SystemError) in
            try sysCall("storage.project", "set project id \(id) on \(path)") { sliver_fs_set_project(fd, id) }
        }
    }

    public func project(of path: String) throws(SystemError) -> UInt32 {
        try withDirectory(path) { fd throws(SystemError) in
            var id: UInt32 = 0
            try sysCall("storage.project", "get project id of \(path)") { sliver_fs_get_project(fd, &id) }
            return id
        }
    }

    public func setLimits(_ storage: String, id: UInt32, blockKiB: UInt64, inodes: UInt64) throws(SystemError) {
        try withDirectory(storage) { fd throws(SystemError) in
            try sysCall("storage.project", "set quota of project \(id) to \(blockKiB) KiB, \(inodes) inodes") {
                sliver_quota_project_set(fd, id, blockKiB, inodes)
            }
        }
    }

    public func usage(_ storage: String, id: UInt32) throws(SystemError) -> (bytes: UInt64, inodes: UInt64, blockKiB: UInt64, inodeLimit: UInt64) {
        try withDirectory(storage) { fd throws(SystemError) in
            var bytes: UInt64 = 0, inodes: UInt64 = 0, kib: UInt64 = 0, inodeLimit: UInt64 = 0
            try sysCall("storage.project", "get quota of project \(id)") {
                sliver_quota_project_get(fd, id, &bytes, &inodes, &kib, &inodeLimit)
            }
            return (bytes, inodes, kib, inodeLimit)
        }
    }
}

/// `quota = "project"`: ext4 (mkfs -O project,quota, mounted with prjquota) or XFS (mounted
/// with prjquota). Every sliver's directory gets its own project id (`quotaID`, from the
/// sliver's slot) with FS_XFLAG_PROJINHERIT, so upper/, work/ and everything the sliver creates
/// below them are charged to it; the block and inode hard limits of that project bound it.
/// Writes past the limit fail with EDQUOT. A process inside a user namespace cannot change a
/// project id (the kernel refuses FSSETXATTR projid changes outside the initial namespace), so
/// a sliver cannot move files out of its quota; processes with CAP_SYS_RESOURCE in the initial
/// namespace (host root) are not held to it.
public struct ProjectQuota: DiskQuota {
    public let kind = DiskQuotaKind.project
    public let storage: String
    let kernel: any ProjectQuotaKernel

    public init(storage: String, kernel: any ProjectQuotaKernel = LinuxProjectQuotaKernel()) throws(ResourceError) {
        do {
            try kernel.checkEnabled(storage)
        } catch {
            throw ResourceError(.unavailable, stage: "storage.project",
                                "storage.quota = \"project\" but project quotas are not on for \(storage) (\(error)); ext4 needs mkfs -O project,quota and mount -o prjquota, XFS mount -o prjquota")
        }
        self.storage = storage
        self.kernel = kernel
    }

    /// quotactl counts blocks of 1 KiB (QIF_DQBLKSIZE); a byte limit is rounded up.
    static func kibibytes(_ bytes: UInt64) -> UInt64 { bytes / 1024 + (bytes % 1024 == 0 ? 0 : 1) }

    public func createDirectory(_ path: String, quotaID: UInt32) throws(ResourceError) {
        guard quotaID != 0 else { throw ResourceError(.invalidArgument, stage: "storage.project", "project id 0 is the default project of every file") }
        try makePlainDirectory(path)
        do {
            // Before anything is created inside, so that all of it inherits the id.
            try kernel.setProject(path, quotaID)
        } catch {
            try? removePlainTree(path)
            throw ResourceError(error)
        }
    }

    /// The project id is read from the directory itself (an orphan found at start has no record
    /// to take it from).
    public func removeDirectory(_ path: String, quotaID: UInt32) throws(ResourceError) {
        guard FileSystem.exists(path) else { return }
        let id = (try? kernel.project(of: path)) ?? 0
        try removePlainTree(path)
        // The id is reused by the next sliver in this slot, which sets its own limits; clearing
        // them now keeps a freed id from holding a stale limit.
        guard id != 0 else { return }
        do {
            try kernel.setLimits(storage, id: id, blockKiB: 0, inodes: 0)
        } catch {
            throw ResourceError(error)
        }
    }

    public func setLimit(_ limit: DiskLimit, path: String, quotaID: UInt32) throws(ResourceError) {
        do {
            let current = try kernel.project(of: path)
            guard current == quotaID else {
                throw ResourceError(.unavailable, stage: "storage.project",
                                    "\(path) has project id \(current), not \(quotaID) (made before storage.quota was \"project\"?): no quota can be set on it")
            }
            try kernel.setLimits(storage, id: quotaID, blockKiB: limit.bytes.map(Self.kibibytes) ?? 0, inodes: limit.inodes ?? 0)
        } catch let error as SystemError {
            throw ResourceError(error)
        } catch let error as ResourceError {
            throw error
        } catch {
            throw ResourceError(.kernel, stage: "storage.project", "\(error)")
        }
    }

    public func usage(path: String, quotaID: UInt32) -> DiskUsage? {
        guard let q = try? kernel.usage(storage, id: quotaID) else { return nil }
        return DiskUsage(bytes: q.bytes, limitBytes: q.blockKiB == 0 ? nil : q.blockKiB * 1024,
                         inodes: q.inodes, inodeLimit: q.inodeLimit == 0 ? nil : q.inodeLimit)
    }
}
