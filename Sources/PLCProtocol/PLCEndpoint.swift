/// Where PLCAPI is served, e.g. `https://plc.example.org/PLCAPI/`. Plain `http://` is accepted
/// only for a loopback host (127.0.0.0/8, ::1, localhost): the node key's MAC could be replayed
/// and the session key is a bearer token, so neither may cross a network in clear.
public struct PLCEndpoint: Sendable, Equatable, CustomStringConvertible {
    public enum Scheme: String, Sendable { case http, https }

    public var scheme: Scheme
    public var host: String
    public var port: Int
    /// Path and query, at least "/".
    public var path: String

    public var description: String { url }

    public var url: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "\(scheme.rawValue)://\(h):\(port)\(path)"
    }

    public init(url: String) throws(PLCProtocolError) {
        func bad(_ why: String) -> PLCProtocolError {
            PLCProtocolError(.invalidArgument, stage: "plc.url", "\"\(url)\": \(why)")
        }
        guard let sep = url.range(of: "://") else { throw bad("expected http(s)://HOST[:PORT]/PATH") }
        guard let scheme = Scheme(rawValue: url[..<sep.lowerBound].lowercased()) else { throw bad("scheme must be https (or http for loopback)") }
        let rest = url[sep.upperBound...]
        let authority = rest.prefix { $0 != "/" && $0 != "?" }
        var path = String(rest.dropFirst(authority.count))
        if path.isEmpty { path = "/" } else if path.hasPrefix("?") { path = "/" + path }
        guard !authority.contains("@") else { throw bad("user information in the URL is not supported") }
        var host: Substring, portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw bad("unterminated [IPv6] host") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty { throw bad("garbage after ]") }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw bad("no host") }
        var port = scheme == .https ? 443 : 80
        if let portText {
            guard let p = Int(portText), (1...65535).contains(p) else { throw bad("port \"\(portText)\" is not 1-65535") }
            port = p
        }
        guard !path.contains(where: { $0 == " " || $0 == "\r" || $0 == "\n" }) else { throw bad("spaces or line breaks in the path") }
        self.scheme = scheme
        self.host = host.lowercased()
        self.port = port
        self.path = path
        guard scheme == .https || isLoopback else {
            throw bad("plain http is allowed only to a loopback address (127.0.0.1, ::1, localhost); use https with a CA certificate")
        }
    }

    public var isLoopback: Bool {
        if host == "localhost" || host == "::1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }
}
