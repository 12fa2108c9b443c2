/// A slice (and so sliver) name as PLCAPI defines it: `^[a-z0-9.]+_[a-zA-Z0-9_.]+$`, the site's
/// login base, an underscore and the slice's own name. Sliverd also uses it as a host account
/// name, a cgroup name and a directory name, so it is limited to 32 characters (useradd's limit)
/// and may not start with a dot or a digit-only login base that is all dots.
public enum SliceName {
    public static let maxLength = 32

    public static func validate(_ name: String) throws(NodeError) {
        func fail(_ reason: String) -> NodeError { NodeError.invalid("name", name, reason) }
        guard !name.isEmpty else { throw fail("must not be empty") }
        guard name.utf8.count <= maxLength else { throw fail("longer than \(maxLength) characters") }
        guard let underscore = name.firstIndex(of: "_") else {
            throw fail("must be <site login base>_<slice name> (no underscore)")
        }
        let site = name[..<underscore]
        let rest = name[name.index(after: underscore)...]
        let siteOK = !site.isEmpty && site.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == ".") }
        let restOK = !rest.isEmpty && rest.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ".") }
        guard siteOK, restOK else {
            throw fail("must match ^[a-z0-9.]+_[a-zA-Z0-9_.]+$")
        }
        guard !name.hasPrefix(".") else { throw fail("must not start with a dot") }
    }
}

extension SliceName {
    /// A host group name: [a-z_][a-z0-9_-]*, at most 32 characters.
    static func validateAccountGroup(_ name: String) throws(NodeError) {
        let ok = !name.isEmpty && name.utf8.count <= 32 && name.first.map { $0 == "_" || ($0.isASCII && $0.isLowercase) } == true
            && name.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_" || $0 == "-") }
        guard ok else { throw NodeError.invalid("group", name, "must match [a-z_][a-z0-9_-]*") }
    }
}

/// A reference image name: letters, digits, dot, dash, underscore; not starting with a dot.
public enum ImageName {
    public static func validate(_ name: String) throws(NodeError) {
        let ok = !name.isEmpty && name.utf8.count <= 64 && !name.hasPrefix(".")
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
        guard ok else { throw NodeError.invalid("image", name, "must be 1-64 of [A-Za-z0-9._-], not starting with a dot") }
    }
}

/// An SSH public key as authorized_keys holds it, without options: `TYPE BASE64 [COMMENT]`.
/// Options (command=, from=, ...) are refused: keys come from PLC or an operator, and an option
/// smuggled in would change what the login does.
public enum SSHKey {
    static let types = ["ssh-rsa", "ssh-dss", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                        "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"]

    public static func validate(_ key: String) throws(NodeError) {
        let parts = key.split(separator: " ", maxSplits: 2)
        let fail = NodeError.invalid("key", String(key.prefix(40)), "not an SSH public key (TYPE BASE64 [COMMENT], no options)")
        guard key.utf8.count <= 16384, !key.contains("\n"), !key.contains("\r"), !key.contains("\0"),
              parts.count >= 2, types.contains(String(parts[0])),
              parts[1].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+/=".contains($0)) }) else { throw fail }
    }
}
