#if canImport(Glibc)
import Glibc
#endif
import CSliverShim
import SliverSystem

/// The host account of each slice: name = slice name, login shell = vsh, no password ('*', which
/// sshd accepts for key logins, unlike useradd's locked '!'), a home with the slice's SSH keys,
/// members of one group (`slices`) that the shipped sshd snippet matches on.
///
/// The account files are edited directly under lckpwdf(), the lock useradd and passwd take, each
/// file replaced atomically with its mode and owner kept: useradd+usermod cost 170 ms here, far
/// more than the whole sliver creation.
public struct HostAccounts: Sendable {
    /// Where passwd, shadow, group and gshadow live (the tests use a private copy).
    public var etc: String
    public var homeBase: String
    public var shell: String
    public var group: String

    public init(etc: String = "/etc", homeBase: String, shell: String, group: String) {
        self.etc = etc
        self.homeBase = homeBase
        self.shell = shell
        self.group = group
    }

    public struct Account: Sendable, Equatable {
        public var name: String
        public var uid: UInt32
        public var gid: UInt32
        public var home: String
    }

    func home(_ name: String) -> String { "\(homeBase)/\(name)" }

    /// The account, if it exists.
    public func account(_ name: String) -> Account? {
        guard let passwd = try? FileSystem.readString(etc + "/passwd") else { return nil }
        for line in passwd.split(separator: "\n") {
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            if f.count >= 7, f[0] == name, let uid = UInt32(f[2]), let gid = UInt32(f[3]) {
                return Account(name: name, uid: uid, gid: gid, home: String(f[5]))
            }
        }
        return nil
    }

    /// Names of the accounts in the slices group (to find orphans after a crash).
    public func members() -> [String] {
        guard let groups = try? FileSystem.readString(etc + "/group") else { return [] }
        for line in groups.split(separator: "\n") {
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            if f.count >= 4, f[0] == group { return f[3].split(separator: ",").map(String.init) }
        }
        return []
    }

    /// Creates the account (idempotent) and its home.
    @discardableResult
    public func ensure(_ name: String) throws(NodeError) -> Account {
        if let existing = account(name) {
            try makeHome(existing)
            return existing
        }
        let account: Account = try locked { () throws(NodeError) -> Account in
            var passwd = try read("passwd"), group = try read("group")
            var shadow = FileSystem.exists(etc + "/shadow") ? try read("shadow") : nil
            var gshadow = FileSystem.exists(etc + "/gshadow") ? try read("gshadow") : nil
            let usedUids = Set(passwd.compactMap { UInt32($0.split(separator: ":", omittingEmptySubsequences: false).dropFirst(2).first ?? "") })
            let usedGids = Set(group.compactMap { UInt32($0.split(separator: ":", omittingEmptySubsequences: false).dropFirst(2).first ?? "") })
            guard group.allSatisfy({ !$0.hasPrefix(name + ":") }) else {
                throw NodeError(.alreadyExists, "host group \"\(name)\" exists but its user does not; refusing to reuse it", field: "name")
            }
            // Regular-user range (adduser's FIRST_UID..LAST_UID), lowest id free as uid and gid.
            guard let id = (1000..<60000).first(where: { !usedUids.contains(UInt32($0)) && !usedGids.contains(UInt32($0)) }).map(UInt32.init) else {
                throw NodeError(.resourceExhausted, "no free host uid/gid in 1000-59999 for account \(name)")
            }
            var slicesGid: UInt32? = nil
            for (i, line) in group.enumerated() where line.hasPrefix(self.group + ":") {
                var f = line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
                slicesGid = UInt32(f[2])
                var members = f[3].split(separator: ",").map(String.init)
                members.append(name)
                f[3] = members.joined(separator: ",")
                group[i] = f.joined(separator: ":")
            }
            if slicesGid == nil {
                let gid = (1000..<60000).first { !usedGids.contains(UInt32($0)) && UInt32($0) != id }.map(UInt32.init) ?? 59999
                group.append("\(self.group):x:\(gid):\(name)")
                gshadow?.append("\(self.group):!::")
            }
            passwd.append("\(name):x:\(id):\(id):slice \(name):\(home(name)):\(shell)")
            group.append("\(name):x:\(id):")
            let days = time(nil) / 86400
            shadow?.append("\(name):*:\(days):0:99999:7:::")
            gshadow?.append("\(name):!::")
            // shadow before passwd: an entry in passwd without one in shadow would be a user
            // with no password policy for a moment; the reverse is harmless.
            if let shadow { try write("shadow", shadow) }
            if let gshadow { try write("gshadow", gshadow) }
            try write("group", group)
            try write("passwd", passwd)
            return Account(name: name, uid: id, gid: id, home: home(name))
        }
        try makeHome(account)
        return account
    }

    private func makeHome(_ account: Account) throws(NodeError) {
        do {
            try FileSystem.makeDirectories(homeBase, mode: 0o755)
            if !FileSystem.isDirectory(account.home) {
                try FileSystem.makeDirectory(account.home, mode: 0o700, owner: (account.uid, account.gid))
            }
        } catch {
            throw NodeError(error)
        }
    }

    /// Removes the account, its group, its membership in the slices group and its home.
    public func remove(_ name: String) throws(NodeError) {
        try locked { () throws(NodeError) in
            func without(_ lines: [String]) -> [String] { lines.filter { !$0.hasPrefix(name + ":") } }
            let passwd = try read("passwd")
            guard passwd.contains(where: { $0.hasPrefix(name + ":") }) else { return }
            var group = without(try read("group"))
            for (i, line) in group.enumerated() where line.hasPrefix(self.group + ":") {
                var f = line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
                f[3] = f[3].split(separator: ",").filter { $0 != name }.joined(separator: ",")
                group[i] = f.joined(separator: ":")
            }
            // The slices group goes with its last member (recreated with the next account), so
            // nothing of Sliverd stays in the account files once it has no slivers.
            var emptied = false
            group.removeAll { line in
                let f = line.split(separator: ":", omittingEmptySubsequences: false)
                let drop = f.count >= 4 && f[0] == self.group && f[3].isEmpty
                emptied = emptied || drop
                return drop
            }
            try write("passwd", without(passwd))
            try write("group", group)
            if FileSystem.exists(etc + "/shadow") { try write("shadow", without(try read("shadow"))) }
            if FileSystem.exists(etc + "/gshadow") {
                var gshadow = without(try read("gshadow"))
                if emptied { gshadow.removeAll { $0.hasPrefix(self.group + ":") } }
                try write("gshadow", gshadow)
            }
        }
        do {
            try FileSystem.removeTree(home(name))
        } catch {
            throw NodeError(error)
        }
    }

    /// Writes ~/.ssh/authorized_keys (0600 in a 0700 dir, owned by the account), for sshd setups
    /// without the AuthorizedKeysCommand. Every step is relative to a directory fd opened without
    /// following symlinks, so nothing the account put in its home can redirect root's writes.
    public func writeKeys(_ name: String, _ keys: [String]) throws(NodeError) {
        guard let account = account(name) else { throw NodeError(.notFound, "no host account \(name)", field: "name") }
        do throws(SystemError) {
            let home = try sysCall("keys", "open \(account.home)") { open(account.home, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            defer { close(home) }
            if mkdirat(home, ".ssh", 0o700) != 0 && errno != EEXIST {
                throw SystemError(stage: "keys", attempted: "mkdir \(account.home)/.ssh", errno: errno)
            }
            let ssh = try sysCall("keys", "open \(account.home)/.ssh") { openat(home, ".ssh", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            defer { close(ssh) }
            try sysCall("keys", "chown \(account.home)/.ssh") { fchown(ssh, account.uid, account.gid) }
            try sysCall("keys", "chmod \(account.home)/.ssh") { fchmod(ssh, 0o700) }
            let tmp = "authorized_keys.sliverd"
            unlinkat(ssh, tmp, 0)
            let fd = try sysCall("keys", "create authorized_keys") { openat(ssh, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
            let text = Array((keys.joined(separator: "\n") + (keys.isEmpty ? "" : "\n")).utf8)
            let written = text.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            fchown(fd, account.uid, account.gid)
            fsync(fd)
            close(fd)
            guard written == text.count else { throw SystemError(stage: "keys", attempted: "write authorized_keys", errno: errno) }
            try sysCall("keys", "rename authorized_keys") { renameat(ssh, tmp, ssh, "authorized_keys") }
        } catch {
            throw NodeError(error)
        }
    }

    // MARK: files

    private func locked<T>(_ body: () throws(NodeError) -> T) throws(NodeError) -> T {
        // lckpwdf always locks /etc/.pwd.lock; a private etc (tests) is used without it.
        let useLock = etc == "/etc"
        if useLock && sliver_lock_passwd() != 0 {
            throw NodeError(.unavailable, "cannot lock the account files (lckpwdf): errno \(errno)")
        }
        defer { if useLock { _ = sliver_unlock_passwd() } }
        return try body()
    }

    private func read(_ file: String) throws(NodeError) -> [String] {
        do {
            return try FileSystem.readString("\(etc)/\(file)").split(separator: "\n").map(String.init)
        } catch {
            throw NodeError(error)
        }
    }

    /// Replaces an account file atomically, keeping its mode and owner (shadow is root:shadow 0640).
    private func write(_ file: String, _ lines: [String]) throws(NodeError) {
        let path = "\(etc)/\(file)"
        do {
            let (uid, gid, mode) = try FileSystem.statOwner(path)
            try FileSystem.writeAtomically(path, Array((lines.joined(separator: "\n") + "\n").utf8), mode: mode_t(mode & 0o7777), owner: (uid, gid))
        } catch {
            throw NodeError(error)
        }
    }
}
