#if canImport(Glibc)
import Glibc
#endif

/// File operations the daemon needs, with errors that say what was attempted.
/// Every descriptor is opened O_CLOEXEC: the daemon spawns helpers concurrently and a leaked fd
/// would end up inside a sliver (CVE-2024-21626 class).
public enum FileSystem {
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    public static func isSymlink(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK
    }

    public static func statOwner(_ path: String) throws(SystemError) -> (uid: UInt32, gid: UInt32, mode: UInt32) {
        var st = stat()
        try sysCall("stat", "stat \(path)") { lstat(path, &st) }
        return (st.st_uid, st.st_gid, st.st_mode)
    }

    /// mkdir -p with the given mode for directories it creates.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(SystemError) {
        if isDirectory(path) { return }
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, mode) != 0 && errno != EEXIST {
                throw SystemError(stage: "mkdir", attempted: "mkdir \(prefix)", errno: errno)
            }
        }
    }

    public static func makeDirectory(_ path: String, mode: mode_t, owner: (uid_t, gid_t)? = nil) throws(SystemError) {
        try sysCall("mkdir", "mkdir \(path) mode \(String(mode, radix: 8))") { mkdir(path, mode) }
        // mkdir honours the umask; chmod makes the mode exact.
        try sysCall("chmod", "chmod \(path)") { chmod(path, mode) }
        if let owner {
            try sysCall("chown", "chown \(path) to \(owner.0):\(owner.1)") { lchown(path, owner.0, owner.1) }
        }
    }

    public static func readFile(_ path: String, limit: Int = 16 << 20) throws(SystemError) -> [UInt8] {
        let fd = try sysCall("open", "open \(path) for reading") { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        var out: [UInt8] = []
        // Uninitialised scratch space: most reads are small procfs and cgroupfs files on hot paths
        // (every login checks /proc/PID/stat), where zeroing a 64 KiB array cost more than the read.
        try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 65536) { (buffer) throws(SystemError) in
            while out.count < limit {
                let n = try sysCall("read", "read \(path)") { read(fd, buffer.baseAddress, buffer.count) }
                if n == 0 { break }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[0..<n]))
            }
        }
        return out
    }

    public static func readString(_ path: String) throws(SystemError) -> String {
        String(decoding: try readFile(path), as: UTF8.self)
    }

    /// Writes into an existing file (cgroupfs, procfs): one write call, no truncation games,
    /// because kernel files take each write(2) as one command.
    public static func writeExisting(_ path: String, _ text: String) throws(SystemError) {
        let fd = try sysCall("open", "open \(path) for writing") { open(path, O_WRONLY | O_CLOEXEC) }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        try sysCall("write", "write \"\(text)\" to \(path)") { bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
    }

    /// Atomic replacement: write a temporary file in the same directory, fsync it, rename it over
    /// the target and fsync the directory, so a crash leaves either the old or the new content.
    public static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o600,
                                       owner: (UInt32, UInt32)? = nil) throws(SystemError) {
        let dir = parentDirectory(path)
        let tmp = "\(path).tmp.\(getpid())"
        let fd = try sysCall("state.write", "create \(tmp)") { open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode) }
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        do {
            defer { close(fd) }
            var offset = 0
            while offset < bytes.count {
                let n = try sysCall("state.write", "write \(tmp)") {
                    bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
                }
                offset += n
            }
            // The mode again after creation: open(2) applied the umask.
            try sysCall("state.write", "chmod \(tmp)") { fchmod(fd, mode) }
            if let owner {
                try sysCall("state.write", "chown \(tmp)") { fchown(fd, owner.0, owner.1) }
            }
            try sysCall("state.write", "fsync \(tmp)") { fsync(fd) }
        }
        try sysCall("state.write", "rename \(tmp) to \(path)") { rename(tmp, path) }
        ok = true
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    public static func parentDirectory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    public static func listDirectory(_ path: String) throws(SystemError) -> [String] {
        guard let dir = opendir(path) else {
            throw SystemError(stage: "readdir", attempted: "open directory \(path)", errno: errno)
        }
        defer { closedir(dir) }
        return entries(dir).sorted()
    }

    /// rm -rf that never follows symlinks and never crosses into another filesystem (a mount left
    /// inside a sliver directory is reported, not descended into). Works on fds (unlinkat) so a
    /// tenant who swaps a directory for a symlink cannot redirect the removal.
    public static func removeTree(_ path: String) throws(SystemError) {
        var st = stat()
        if lstat(path, &st) != 0 {
            if errno == ENOENT { return }
            throw SystemError(stage: "remove", attempted: "lstat \(path)", errno: errno)
        }
        if (st.st_mode & S_IFMT) != S_IFDIR {
            try sysCall("remove", "unlink \(path)") { unlink(path) }
            return
        }
        let fd = try sysCall("remove", "open \(path)") { open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        try removeContents(dirfd: fd, device: st.st_dev, path: path)
        try sysCall("remove", "rmdir \(path)") { rmdir(path) }
    }

    /// The names in an open directory stream, without "." and "..".
    private static func entries(_ dir: OpaquePointer) -> [String] {
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    private static func removeContents(dirfd: Int32, device: dev_t, path: String) throws(SystemError) {
        guard let dir = fdopendir(dirfd) else {
            close(dirfd)
            throw SystemError(stage: "remove", attempted: "fdopendir \(path)", errno: errno)
        }
        defer { closedir(dir) }
        for name in entries(dir) {
            var st = stat()
            try sysCall("remove", "fstatat \(path)/\(name)") { fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                if st.st_dev != device {
                    throw SystemError(stage: "remove", attempted: "descend into \(path)/\(name) (another filesystem is mounted there)", errno: EBUSY)
                }
                let child = try sysCall("remove", "open \(path)/\(name)") {
                    openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                }
                try removeContents(dirfd: child, device: device, path: "\(path)/\(name)")
                try sysCall("remove", "rmdir \(path)/\(name)") { unlinkat(dirfd, name, AT_REMOVEDIR) }
            } else {
                try sysCall("remove", "unlink \(path)/\(name)") { unlinkat(dirfd, name, 0) }
            }
        }
    }
}
