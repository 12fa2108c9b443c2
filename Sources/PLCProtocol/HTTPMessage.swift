import Foundation

/// The small part of HTTP/1.1 that XML-RPC needs: one POST, one answer, then the connection
/// closes. Used by the loopback client and by plcd's server.
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    public var reason: String
    public var contentType: String
    public var body: [UInt8]

    public init(status: Int, reason: String, contentType: String, body: [UInt8]) {
        self.status = status
        self.reason = reason
        self.contentType = contentType
        self.body = body
    }
}

public struct HTTPRequest: Sendable, Equatable {
    public var method: String
    public var target: String
    public var headers: [String: String]
    public var body: [UInt8]
}

public enum HTTPMessage {
    public static let maxHeader = 64 << 10
    public static let maxBody = XMLRPCDecoder.maxDocumentSize

    public static func encodeRequest(_ endpoint: PLCEndpoint, body: [UInt8]) -> [UInt8] {
        let host = endpoint.host.contains(":") ? "[\(endpoint.host)]" : endpoint.host
        let head = "POST \(endpoint.path) HTTP/1.1\r\nHost: \(host):\(endpoint.port)\r\nUser-Agent: sliverd-plc/1\r\n"
            + "Content-Type: text/xml\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        return Array(head.utf8) + body
    }

    public static func encodeResponse(status: Int, reason: String, contentType: String, body: [UInt8]) -> [UInt8] {
        let head = "HTTP/1.1 \(status) \(reason)\r\nServer: plcd\r\nContent-Type: \(contentType)\r\n"
            + "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        return Array(head.utf8) + body
    }

    /// Splits a message at the blank line. nil while the header is incomplete.
    static func splitHead(_ bytes: [UInt8], stage: String) throws(PLCProtocolError) -> (lines: [String], bodyStart: Int)? {
        var i = 0
        while i + 3 < bytes.count {
            if bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
                let head = String(decoding: bytes[0..<i], as: UTF8.self)
                return (head.components(separatedBy: "\r\n"), i + 4)
            }
            i += 1
        }
        guard bytes.count <= maxHeader else {
            throw PLCProtocolError(.malformed, stage: stage, "HTTP header longer than \(maxHeader) bytes")
        }
        return nil
    }

    static func headerFields(_ lines: ArraySlice<String>, stage: String) throws(PLCProtocolError) -> [String: String] {
        var fields: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else {
                throw PLCProtocolError(.malformed, stage: stage, "malformed header line \"\(line.prefix(60))\"")
            }
            fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return fields
    }

    /// Parses a complete response (the connection has closed, or Content-Length was reached).
    /// `complete` = the peer closed: a body shorter than its Content-Length is then an error.
    /// Returns nil when more bytes are needed.
    public static func parseResponse(_ bytes: [UInt8], complete: Bool) throws(PLCProtocolError) -> HTTPResponse? {
        let stage = "http.response"
        guard let (lines, bodyStart) = try splitHead(bytes, stage: stage) else {
            if complete {
                let sample = String(decoding: bytes.prefix(60), as: UTF8.self)
                throw PLCProtocolError(.malformed, stage: stage, bytes.isEmpty ? "connection closed without an answer" : "connection closed inside the HTTP header: \"\(sample)\"")
            }
            return nil
        }
        let statusLine = lines[0].split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/"), let status = Int(statusLine[1]), (100...599).contains(status) else {
            throw PLCProtocolError(.malformed, stage: stage, "not an HTTP status line: \"\(lines[0].prefix(60))\"")
        }
        let fields = try headerFields(lines.dropFirst(), stage: stage)
        let rest = Array(bytes[bodyStart...])
        let body: [UInt8]
        if fields["transfer-encoding"]?.lowercased().contains("chunked") == true {
            guard let decoded = try dechunk(rest, stage: stage) else {
                if complete { throw PLCProtocolError(.malformed, stage: stage, "connection closed inside a chunked body (truncated answer)") }
                return nil
            }
            body = decoded
        } else if let lengthText = fields["content-length"] {
            guard let length = Int(lengthText), length >= 0, length <= maxBody else {
                throw PLCProtocolError(.malformed, stage: stage, "bad Content-Length \"\(lengthText)\"")
            }
            if rest.count < length {
                if complete { throw PLCProtocolError(.malformed, stage: stage, "body truncated: \(rest.count) of \(length) bytes") }
                return nil
            }
            body = Array(rest.prefix(length))
        } else {
            if !complete { return nil }
            body = rest
        }
        return HTTPResponse(status: status, reason: statusLine.count > 2 ? String(statusLine[2]) : "",
                            contentType: fields["content-type"] ?? "", body: body)
    }

    /// Decodes a chunked body; nil if incomplete.
    static func dechunk(_ bytes: [UInt8], stage: String) throws(PLCProtocolError) -> [UInt8]? {
        var out: [UInt8] = []
        var i = 0
        while true {
            guard let lineEnd = indexOfCRLF(bytes, from: i) else { return nil }
            let sizeText = String(decoding: bytes[i..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size >= 0 else {
                throw PLCProtocolError(.malformed, stage: stage, "bad chunk size \"\(sizeText.prefix(20))\"")
            }
            i = lineEnd + 2
            if size == 0 { return out }
            guard out.count + size <= maxBody else { throw PLCProtocolError(.malformed, stage: stage, "body larger than \(maxBody) bytes") }
            guard i + size + 2 <= bytes.count else { return nil }
            out.append(contentsOf: bytes[i..<(i + size)])
            i += size + 2
        }
    }

    private static func indexOfCRLF(_ bytes: [UInt8], from start: Int) -> Int? {
        var i = start
        while i + 1 < bytes.count {
            if bytes[i] == 13 && bytes[i + 1] == 10 { return i }
            i += 1
        }
        return nil
    }

    /// Parses a request as it arrives; nil until the header and Content-Length bytes are there.
    public static func parseRequest(_ bytes: [UInt8]) throws(PLCProtocolError) -> HTTPRequest? {
        let stage = "http.request"
        guard let (lines, bodyStart) = try splitHead(bytes, stage: stage) else { return nil }
        let requestLine = lines[0].split(separator: " ")
        guard requestLine.count == 3, requestLine[2].hasPrefix("HTTP/1.") else {
            throw PLCProtocolError(.malformed, stage: stage, "not an HTTP/1.x request line: \"\(lines[0].prefix(60))\"")
        }
        let fields = try headerFields(lines.dropFirst(), stage: stage)
        guard fields["transfer-encoding"] == nil else {
            throw PLCProtocolError(.malformed, stage: stage, "chunked requests are not supported; send Content-Length")
        }
        let length: Int
        if let text = fields["content-length"] {
            guard let n = Int(text), n >= 0 else { throw PLCProtocolError(.malformed, stage: stage, "bad Content-Length \"\(text)\"") }
            guard n <= maxBody else { throw PLCProtocolError(.malformed, stage: stage, "body of \(n) bytes exceeds \(maxBody)") }
            length = n
        } else {
            length = 0
        }
        guard bytes.count - bodyStart >= length else { return nil }
        return HTTPRequest(method: String(requestLine[0]), target: String(requestLine[1]), headers: fields,
                           body: Array(bytes[bodyStart..<(bodyStart + length)]))
    }
}
