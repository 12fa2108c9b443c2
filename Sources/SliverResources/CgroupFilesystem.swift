#if canImport(Glibc)
import Glibc
#endif
import SliverSystem

/// The operations a cgroup driver performs on cgroupfs. The seam exists because cgroup v2 with
/// controllers cannot run on the test machines (their unified hierarchy has none): the v2 driver
/// is tested against a recording stand-in, the v1 driver against the real kernel.
public protocol CgroupFilesystem: Sendable {
    func makeDirectory(_ path: String) throws(SystemError)
    func removeDirectory(_ path: String) throws(SystemError)
    func exists(_ path: String) -> Bool
    func write(_ path: String, _ value: String) throws(SystemError)
    func read(_ path: String) throws(SystemError) -> String
    func list(_ path: String) throws(SystemError) -> [String]
}

/// The kernel's cgroupfs.
public struct KernelCgroupFilesystem: CgroupFilesystem {
    public init() {}

    public func makeDirectory(_ path: String) throws(SystemError) {
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw SystemError(stage: "cgroup.create", attempted: "mkdir \(path)", errno: errno)
        }
    }

    public func removeDirectory(_ path: String) throws(SystemError) {
        if rmdir(path) != 0 && errno != ENOENT {
            throw SystemError(stage: "cgroup.remove", attempted: "rmdir \(path)", errno: errno)
        }
    }

    public func exists(_ path: String) -> Bool { FileSystem.exists(path) }
    public func write(_ path: String, _ value: String) throws(SystemError) { try FileSystem.writeExisting(path, value) }
    public func read(_ path: String) throws(SystemError) -> String { try FileSystem.readString(path) }

    public func list(_ path: String) throws(SystemError) -> [String] {
        try FileSystem.listDirectory(path).filter { FileSystem.isDirectory(path + "/" + $0) }
    }
}
