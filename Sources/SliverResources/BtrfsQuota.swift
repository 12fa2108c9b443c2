#if canImport(Glibc)
import Glibc
#endif
import CSliverShim
import SliverSystem

/// `quota = "btrfs"`: every sliver's directory is a btrfs subvolume, limited by the
/// referenced-bytes limit of its level-0 qgroup (0/<subvolume id>).
///
/// Everything goes through ioctls (BTRFS_IOC_SUBVOL_CREATE, SNAP_DESTROY, QGROUP_LIMIT,
/// INO_LOOKUP, FS_INFO), not the `btrfs` command: no process per create or destroy, errors come
/// back as errno, and nothing depends on the output format of btrfs-progs. Usage is read from
/// sysfs (`/sys/fs/btrfs/<fsid>/qgroups/0_<id>/`, kernel 5.9+).
///
/// Kernel semantics worth knowing:
/// - The limit is checked when data is reserved (at write time), so a write past it fails at
///   once with EDQUOT; the usage counters, though, are only updated at transaction commit
///   (every 30 s by default): `usage` lags by up to that much.
/// - Deleting a subvolume is immediate for the namespace; its space is freed by the cleaner
///   thread later. Recent kernels then remove its qgroup themselves; on older ones a stale
///   qgroup stays (harmless; `btrfs qgroup clear-stale` removes it).
public struct BtrfsQuota: DiskQuota {
    public let kind = DiskQuotaKind.btrfs
    /// statfs f_type of btrfs.
    static let magic: Int64 = 0x9123_683E
    /// The inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID).
    static let subvolumeRootInode: UInt64 = 256

    public let storage: String
    public let fsid: String

    /// Checks that `storage` is on btrfs and that quotas are enabled there.
    public init(storage: String) throws(ResourceError) {
        let fd = try openDirectory(storage, stage: "storage.btrfs")
        defer { close(fd) }
        var fsMagic: Int64 = 0
        guard sliver_fs_magic(fd, &fsMagic) == 0 else {
            throw ResourceError(SystemError(stage: "storage.btrfs", attempted: "statfs \(storage)", errno: errno))
        }
        guard fsMagic == Self.magic else {
            throw ResourceError(.unavailable, stage: "storage.btrfs",
                                "storage.quota = \"btrfs\" but \(storage) is not on btrfs (f_type 0x\(String(fsMagic, radix: 16))); bootscripts/sliverd-prepare-node --btrfs-image makes one")
        }
        var text = [CChar](repeating: 0, count: 37)
        guard sliver_btrfs_fsid(fd, &text) == 0 else {
            throw ResourceError(SystemError(stage: "storage.btrfs", attempted: "BTRFS_IOC_FS_INFO on \(storage)", errno: errno))
        }
        self.storage = storage
        fsid = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // The qgroups directory exists in sysfs exactly while quotas are enabled.
        guard FileSystem.isDirectory("/sys/fs/btrfs/\(fsid)/qgroups") else {
            throw ResourceError(.unavailable, stage: "storage.btrfs",
                                "btrfs quotas are not enabled on \(storage): run `btrfs quota enable \(storage)`")
        }
    }

    public func createDirectory(_ path: String, quotaID: UInt32) throws(ResourceError) {
        let parent = FileSystem.parentDirectory(path)
        let name = String(path.dropFirst(parent.count + 1))
        let dirfd = try openDirectory(parent, stage: "storage.btrfs")
        defer { close(dirfd) }
        do {
            try sysCall("storage.btrfs", "create subvolume \(path)") { sliver_btrfs_subvol_create(dirfd, name) }
            // A new subvolume's root is 0755 root:root; slivers' directories are 0700.
            try sysCall("storage.btrfs", "chmod \(path)") { fchmodat(dirfd, name, 0o700, 0) }
        } catch {
            throw ResourceError(error)
        }
    }

    public func removeDirectory(_ path: String, quotaID: UInt32) throws(ResourceError) {
        var st = stat()
        if lstat(path, &st) != 0 { return }
        // A plain directory (made before the node switched to btrfs quotas) is removed as one.
        guard (st.st_mode & S_IFMT) == S_IFDIR, UInt64(st.st_ino) == Self.subvolumeRootInode else {
            try removePlainTree(path)
            return
        }
        let parent = FileSystem.parentDirectory(path)
        let name = String(path.dropFirst(parent.count + 1))
        let id = try subvolumeID(path)
        let dirfd = try openDirectory(parent, stage: "storage.btrfs")
        defer { close(dirfd) }
        do {
            // Deletes the whole tree in one operation, whatever the sliver left in it.
            try sysCall("storage.btrfs", "delete subvolume \(path)") { sliver_btrfs_subvol_destroy(dirfd, name) }
        } catch {
            throw ResourceError(error)
        }
        // Best effort: EBUSY while the cleaner still drops the subvolume (recent kernels then
        // remove the qgroup themselves), ENOENT when it is already gone.
        _ = sliver_btrfs_qgroup_destroy(dirfd, id)
    }

    public func setLimit(_ limit: DiskLimit, path: String, quotaID: UInt32) throws(ResourceError) {
        let fd = try openSubvolume(path)
        defer { close(fd) }
        do {
            // UInt64.max is the kernel's "clear this limit". btrfs has no inode limit.
            try sysCall("storage.btrfs", "set qgroup limit of \(path) to \(limit.bytes.map(String.init) ?? "none") bytes") {
                sliver_btrfs_qgroup_limit(fd, limit.bytes ?? UInt64.max)
            }
        } catch {
            throw ResourceError(error)
        }
    }

    public func usage(path: String, quotaID: UInt32) -> DiskUsage? {
        guard let id = try? subvolumeID(path) else { return nil }
        let dir = "/sys/fs/btrfs/\(fsid)/qgroups/0_\(id)"
        func number(_ file: String) -> UInt64? {
            (try? FileSystem.readString(dir + "/" + file)).flatMap { UInt64($0.trimmingCharacters(in: "\n ")) }
        }
        guard let referenced = number("referenced") else { return nil }
        // max_referenced reads 0 when no limit is set (a real limit of 0 is never set here).
        let limit = number("max_referenced").flatMap { $0 == 0 ? nil : $0 }
        return DiskUsage(bytes: referenced, limitBytes: limit)
    }

    /// The id of the subvolume whose root is `path`.
    public func subvolumeID(_ path: String) throws(ResourceError) -> UInt64 {
        let fd = try openSubvolume(path)
        defer { close(fd) }
        var id: UInt64 = 0
        do {
            try sysCall("storage.btrfs", "look up the subvolume id of \(path)") { sliver_btrfs_subvol_id(fd, &id) }
        } catch {
            throw ResourceError(error)
        }
        return id
    }

    /// Opens `path`, refusing anything that is not the root of a subvolume: a qgroup limit set
    /// through a plain directory would land on the storage root's subvolume instead.
    private func openSubvolume(_ path: String) throws(ResourceError) -> Int32 {
        let fd = try openDirectory(path, stage: "storage.btrfs")
        var st = stat()
        guard fstat(fd, &st) == 0, UInt64(st.st_ino) == Self.subvolumeRootInode else {
            close(fd)
            throw ResourceError(.unavailable, stage: "storage.btrfs",
                                "\(path) is not a btrfs subvolume (made before storage.quota was \"btrfs\"?): no quota can be set on it")
        }
        return fd
    }
}
