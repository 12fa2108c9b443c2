#if canImport(Glibc)
import Glibc
#endif
import SliverSystem

/// The per-sliver directory under the storage root, named after the sliver:
///
///     <storage>/<name>/upper   writable overlay layer, owned by the sliver's base ID
///     <storage>/<name>/work    overlayfs work dir (same filesystem as upper)
///     <storage>/<name>/lower   mount point of the idmapped image (inside the helper's mount ns)
///     <storage>/<name>/rootfs  mount point of the overlay (inside the helper's mount ns)
///
/// lower and rootfs only ever carry mounts inside the sliver's private mount namespaces, so the
/// host's mount table holds nothing of a sliver, and a dead sliver leaves no mount behind.
///
/// `<storage>/<name>` itself is made and removed by a `SliverDirectoryMaker`: a plain directory
/// by default; NodeManager passes its disk-quota backend (a btrfs subvolume, a directory with a
/// project id), so everything below it is charged to the sliver's quota.
public struct SliverLayout: Sendable, Equatable {
    public let directory: String

    public init(storage: String, name: String) {
        directory = storage + "/" + name
    }

    public var upper: String { directory + "/upper" }
    public var work: String { directory + "/work" }
    public var lower: String { directory + "/lower" }
    public var rootfs: String { directory + "/rootfs" }

    /// Creates the directory tree. Fails if it exists (a leftover must be removed first).
    public func create(owner range: IDRange, directories: any SliverDirectoryMaker = PlainDirectories()) throws(IsolationError) {
        try directories.makeDirectory(directory)
        do {
            // The overlay's upper and work dirs belong to the sliver's root (host uid = base):
            // the root directory of the sliver's filesystem is upper's root.
            try FileSystem.makeDirectory(upper, mode: 0o755, owner: (range.base, range.base))
            try FileSystem.makeDirectory(work, mode: 0o700, owner: (range.base, range.base))
            try FileSystem.makeDirectory(lower, mode: 0o755)
            try FileSystem.makeDirectory(rootfs, mode: 0o755)
        } catch {
            throw IsolationError(error)
        }
    }

    public var exists: Bool { FileSystem.exists(directory) }

    /// Removes everything; safe against symlinks planted by the sliver in its upper layer.
    public func remove(directories: any SliverDirectoryMaker = PlainDirectories()) throws(IsolationError) {
        try directories.removeDirectory(directory)
    }
}

/// Makes and removes a sliver's top directory (root-owned, mode 0700).
public protocol SliverDirectoryMaker: Sendable {
    func makeDirectory(_ path: String) throws(IsolationError)
    /// Removes it with everything inside; nothing happens when it does not exist.
    func removeDirectory(_ path: String) throws(IsolationError)
}

/// mkdir and a symlink-safe rm -r.
public struct PlainDirectories: SliverDirectoryMaker {
    public init() {}

    public func makeDirectory(_ path: String) throws(IsolationError) {
        do {
            try FileSystem.makeDirectory(path, mode: 0o700)
        } catch {
            throw IsolationError(error)
        }
    }

    public func removeDirectory(_ path: String) throws(IsolationError) {
        do {
            try FileSystem.removeTree(path)
        } catch {
            throw IsolationError(error)
        }
    }
}
