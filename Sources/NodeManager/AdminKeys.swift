#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PLCProtocol
import SliverSystem

/// GetSlivers' `accounts`: the ssh keys PLC grants on the node itself, `root` (PLC admins and
/// site PIs/techs marked isrootonsite) and `site_admin` (the site's PIs and techs).
///
/// NodeManager's specialaccounts plugin rewrote ~root/.ssh/authorized_keys. Sliverd is more
/// conservative: it writes exactly one file per account, `<admin_keys_dir>/root` and
/// `<admin_keys_dir>/site_admin`, root-owned, mode 0644, replaced atomically and only when the
/// content changes, removed when PLC stops sending that account. It never touches /root/.ssh,
/// any home directory or the account files: whether those keys open anything is the operator's
/// choice, by pointing sshd at them (`AuthorizedKeysFile .ssh/authorized_keys
/// /etc/sliverd/admin-keys/%u`). Other account names are ignored and reported; malformed keys
/// and keys with options (command=, from=) are dropped and reported.
struct AdminKeys {
    static let accounts = ["root", "site_admin"]
    let directory: String

    /// Brings the files in line with the snapshot; returns what changed and what was dropped.
    func apply(_ wanted: [SliversSnapshot.Account]) throws(NodeError) -> (changes: [String], notes: [String]) {
        var changes: [String] = [], notes: [String] = []
        var byName: [String: [String]] = [:]
        for account in wanted {
            guard Self.accounts.contains(account.name) else {
                notes.append("account \"\(account.name)\" ignored: only root and site_admin are applied")
                continue
            }
            var keys: [String] = []
            for key in account.keys.map({ $0.trimmingCharacters(in: .whitespacesAndNewlines) }) {
                do {
                    try SSHKey.validate(key)
                    if !keys.contains(key) { keys.append(key) }
                } catch {
                    notes.append("account \(account.name): \(error.message): dropped")
                }
            }
            byName[account.name, default: []].append(contentsOf: keys.filter { !(byName[account.name] ?? []).contains($0) })
        }
        for name in Self.accounts {
            let path = "\(directory)/\(name)"
            let current = try? FileSystem.readString(path)
            do {
                if let keys = byName[name] {
                    let text = keys.map { $0 + "\n" }.joined()
                    guard current != text else { continue }
                    try FileSystem.makeDirectories(directory, mode: 0o755)
                    try FileSystem.writeAtomically(path, Array(text.utf8), mode: 0o644, owner: (0, 0))
                    changes.append("\(path): \(keys.count) key(s)")
                } else if current != nil || FileSystem.exists(path) {
                    try sysCall("accounts", "unlink \(path)") { unlink(path) }
                    changes.append("\(path) removed (PLC sends no \(name) account)")
                }
            } catch {
                throw NodeError(error)
            }
        }
        return (changes, notes)
    }
}
