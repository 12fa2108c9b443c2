#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The node's identity towards PLC, from PlanetLab's `plnode.txt` (`/usr/boot/plnode.txt` on a
/// PlanetLab node, written by the boot CD): shell-style `KEY="value"` lines, of which NODE_ID
/// and NODE_KEY matter here. The key is a shared secret: `description` never shows it.
public struct NodeCredentials: Sendable, Equatable, CustomStringConvertible {
    public var nodeID: Int
    public var nodeKey: String

    public init(nodeID: Int, nodeKey: String) {
        self.nodeID = nodeID
        self.nodeKey = nodeKey
    }

    public var description: String { "node \(nodeID) (key of \(nodeKey.utf8.count) bytes)" }

    /// Parses plnode.txt text. Lines are `NAME=value`, `NAME="value"` or `NAME='value'`;
    /// blank lines and `#` comments are skipped; other keys (IP_METHOD, HOST_NAME...) are ignored.
    public init(plnode text: String, source: String = "plnode.txt") throws(PLCProtocolError) {
        var fields: [String: String] = [:]
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasSuffix("\r") { line.removeLast() }
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = String(line.dropFirst(7)).trimmingCharacters(in: .whitespaces) }
            guard let eq = line.firstIndex(of: "="), !line[..<eq].isEmpty else {
                throw PLCProtocolError(.credentials, stage: "credentials.parse", "\(source) line \(index + 1): expected NAME=\"value\"")
            }
            let name = String(line[..<eq])
            var value = Substring(line[line.index(after: eq)...])
            if let quote = value.first, quote == "\"" || quote == "'" {
                guard value.count >= 2, value.last == quote else {
                    throw PLCProtocolError(.credentials, stage: "credentials.parse", "\(source) line \(index + 1): unterminated quote in \(name)")
                }
                value = value.dropFirst().dropLast()
            }
            fields[name] = String(value)
        }
        guard let idText = fields["NODE_ID"] else {
            throw PLCProtocolError(.credentials, stage: "credentials.parse", "\(source): NODE_ID missing")
        }
        guard let id = Int(idText), id > 0 else {
            throw PLCProtocolError(.credentials, stage: "credentials.parse", "\(source): NODE_ID \"\(idText)\" is not a positive integer")
        }
        guard let key = fields["NODE_KEY"], !key.isEmpty else {
            throw PLCProtocolError(.credentials, stage: "credentials.parse", "\(source): NODE_KEY missing or empty")
        }
        self.init(nodeID: id, nodeKey: key)
    }

    /// Reads the credentials file, refusing it unless only root can read or change it: owned by
    /// uid 0, a regular file (not a symlink), no group or other permission bits. The checks are
    /// made on the opened descriptor, so the file checked is the file read.
    public static func load(path: String) throws(PLCProtocolError) -> NodeCredentials {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            let err = errno
            throw PLCProtocolError(.credentials, stage: "credentials.read",
                                   "cannot open \(path): \(String(cString: strerror(err)))" + (err == ELOOP ? " (a symlink is refused)" : ""))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw PLCProtocolError(.credentials, stage: "credentials.read", "cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw PLCProtocolError(.credentials, stage: "credentials.read", "\(path) is not a regular file")
        }
        guard st.st_uid == 0 else {
            throw PLCProtocolError(.credentials, stage: "credentials.read", "\(path) is owned by uid \(st.st_uid), must be owned by root")
        }
        guard st.st_mode & 0o077 == 0 else {
            throw PLCProtocolError(.credentials, stage: "credentials.read",
                                   "\(path) has mode \(String(st.st_mode & 0o7777, radix: 8)): the node key must be readable by root only (chmod 600)")
        }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 20 {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else {
                throw PLCProtocolError(.credentials, stage: "credentials.read", "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes.append(contentsOf: buffer[0..<n])
        }
        return try NodeCredentials(plnode: String(decoding: bytes, as: UTF8.self), source: path)
    }
}
