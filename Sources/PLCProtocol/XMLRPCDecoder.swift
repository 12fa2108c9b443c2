import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// Parses XML-RPC strictly: anything that is not exactly a methodCall / methodResponse of the
/// spec (plus the `<nil/>` and `<i8>` extensions) is refused with an error that names the path
/// of the offending element, its line and what was expected. Truncated input, an HTML error page
/// and wrong scalar text ("abc" in an <int>) all end here, never in a half-decoded value.
public enum XMLRPCDecoder {
    /// Larger documents are refused before parsing (a GetSlivers answer of 1000 slivers is a few MiB).
    public static let maxDocumentSize = 64 << 20
    static let maxDepth = 200

    public static func decodeResponse(_ bytes: [UInt8]) throws(PLCProtocolError) -> XMLRPCResponse {
        let root = try XMLTree.parse(bytes)
        guard root.name == "methodResponse" else { throw shape("document", root, "expected <methodResponse>, got <\(root.name)>") }
        try root.requireNoText("methodResponse")
        guard root.children.count == 1 else {
            throw shape("methodResponse", root, "expected one <params> or <fault>, got \(root.childList)")
        }
        let body = root.children[0]
        switch body.name {
        case "params":
            try body.requireNoText("methodResponse/params")
            guard body.children.count == 1, body.children[0].name == "param" else {
                throw shape("methodResponse/params", body, "expected exactly one <param>, got \(body.childList)")
            }
            return .success(try paramValue(body.children[0], path: "methodResponse/params/param"))
        case "fault":
            let path = "methodResponse/fault"
            try body.requireNoText(path)
            guard body.children.count == 1, body.children[0].name == "value" else {
                throw shape(path, body, "expected one <value>, got \(body.childList)")
            }
            let value = try decodeValue(body.children[0], path: path + "/value", depth: 0)
            guard case .structure(let members) = value else {
                throw shape(path, body, "expected a struct, got \(value.brief)")
            }
            guard case .int(let code)? = members["faultCode"] else {
                throw shape(path, body, "faultCode must be an int, got \(members["faultCode"]?.brief ?? "nothing")")
            }
            guard case .string(let string)? = members["faultString"] else {
                throw shape(path, body, "faultString must be a string, got \(members["faultString"]?.brief ?? "nothing")")
            }
            return .fault(code: code, string: string)
        default:
            throw shape("methodResponse", body, "expected <params> or <fault>, got <\(body.name)>")
        }
    }

    public static func decodeCall(_ bytes: [UInt8]) throws(PLCProtocolError) -> XMLRPCCall {
        let root = try XMLTree.parse(bytes)
        guard root.name == "methodCall" else { throw shape("document", root, "expected <methodCall>, got <\(root.name)>") }
        try root.requireNoText("methodCall")
        guard let nameElement = root.children.first, nameElement.name == "methodName", nameElement.children.isEmpty else {
            throw shape("methodCall", root, "expected <methodName> first, got \(root.childList)")
        }
        let method = nameElement.text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !method.isEmpty else { throw shape("methodCall/methodName", nameElement, "empty method name") }
        var params: [XMLRPCValue] = []
        switch root.children.count {
        case 1: break
        case 2:
            let list = root.children[1]
            guard list.name == "params" else { throw shape("methodCall", list, "expected <params>, got <\(list.name)>") }
            try list.requireNoText("methodCall/params")
            for (i, param) in list.children.enumerated() {
                guard param.name == "param" else { throw shape("methodCall/params", param, "expected <param>, got <\(param.name)>") }
                params.append(try paramValue(param, path: "methodCall/params/param[\(i)]"))
            }
        default:
            throw shape("methodCall", root, "expected <methodName> and <params>, got \(root.childList)")
        }
        return XMLRPCCall(method: method, params: params)
    }

    private static func paramValue(_ param: XMLTree, path: String) throws(PLCProtocolError) -> XMLRPCValue {
        try param.requireNoText(path)
        guard param.children.count == 1, param.children[0].name == "value" else {
            throw shape(path, param, "expected exactly one <value>, got \(param.childList)")
        }
        return try decodeValue(param.children[0], path: path + "/value", depth: 0)
    }

    static func decodeValue(_ value: XMLTree, path: String, depth: Int) throws(PLCProtocolError) -> XMLRPCValue {
        guard value.name == "value" else { throw shape(path, value, "expected <value>, got <\(value.name)>") }
        guard depth < maxDepth else { throw shape(path, value, "values nested deeper than \(maxDepth)") }
        // <value>text</value> without a type element is a string, whitespace included.
        if value.children.isEmpty { return .string(value.text) }
        try value.requireNoText(path)
        guard value.children.count == 1 else { throw shape(path, value, "expected one type element, got \(value.childList)") }
        let typed = value.children[0]
        let here = path + "/" + typed.name
        if typed.name != "array" && typed.name != "struct" && !typed.children.isEmpty {
            throw shape(here, typed, "unexpected element <\(typed.children[0].name)> inside a scalar")
        }
        let text = typed.text.trimmingCharacters(in: .whitespacesAndNewlines)
        switch typed.name {
        case "int", "i4", "i8":
            guard let n = Int(text.hasPrefix("+") ? String(text.dropFirst()) : text) else {
                throw shape(here, typed, "\"\(text.prefix(40))\" is not an integer")
            }
            return .int(n)
        case "boolean":
            switch text {
            case "0": return .bool(false)
            case "1": return .bool(true)
            default: throw shape(here, typed, "\"\(text.prefix(40))\" is not a boolean (0 or 1)")
            }
        case "string":
            return .string(typed.text)
        case "double":
            guard let d = Double(text), d.isFinite else { throw shape(here, typed, "\"\(text.prefix(40))\" is not a finite double") }
            return .double(d)
        case "dateTime.iso8601":
            guard isISO8601(text) else { throw shape(here, typed, "\"\(text.prefix(40))\" is not YYYYMMDDTHH:MM:SS") }
            return .dateTime(text)
        case "base64":
            guard let bytes = Base64.decode(text) else { throw shape(here, typed, "invalid base64") }
            return .base64(bytes)
        case "nil", "ex:nil":
            guard text.isEmpty else { throw shape(here, typed, "<nil/> must be empty") }
            return .nil
        case "array":
            try typed.requireNoText(here)
            guard typed.children.count == 1, typed.children[0].name == "data" else {
                throw shape(here, typed, "expected exactly one <data>, got \(typed.childList)")
            }
            let data = typed.children[0]
            try data.requireNoText(here + "/data")
            var items: [XMLRPCValue] = []
            items.reserveCapacity(data.children.count)
            for (i, item) in data.children.enumerated() {
                items.append(try decodeValue(item, path: "\(here)/data/value[\(i)]", depth: depth + 1))
            }
            return .array(items)
        case "struct":
            try typed.requireNoText(here)
            var members: [String: XMLRPCValue] = [:]
            for member in typed.children {
                guard member.name == "member" else { throw shape(here, member, "expected <member>, got <\(member.name)>") }
                try member.requireNoText(here + "/member")
                guard member.children.count == 2, member.children[0].name == "name", member.children[0].children.isEmpty else {
                    throw shape(here + "/member", member, "expected <name> then <value>, got \(member.childList)")
                }
                let key = member.children[0].text
                guard members[key] == nil else { throw shape(here, member, "duplicate member \"\(key)\"") }
                members[key] = try decodeValue(member.children[1], path: "\(here)/member[\(key)]/value", depth: depth + 1)
            }
            return .structure(members)
        default:
            throw shape(path, typed, "unknown value type <\(typed.name)>")
        }
    }

    /// "YYYYMMDDTHH:MM:SS", the form every XML-RPC implementation writes.
    static func isISO8601(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard b.count == 17, b[8] == UInt8(ascii: "T"), b[11] == UInt8(ascii: ":"), b[14] == UInt8(ascii: ":") else { return false }
        for i in [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 12, 13, 15, 16] where !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[i]) {
            return false
        }
        return true
    }

    static func shape(_ path: String, _ element: XMLTree, _ what: String) -> PLCProtocolError {
        PLCProtocolError(.invalidShape, stage: "xmlrpc.decode", "\(path) (line \(element.line)): \(what)")
    }
}

/// A parsed element: name, direct text (concatenated) and child elements, with its line.
final class XMLTree {
    let name: String
    let line: Int
    var text = ""
    var children: [XMLTree] = []

    init(name: String, line: Int) {
        self.name = name
        self.line = line
    }

    var childList: String {
        children.isEmpty ? "nothing" : children.prefix(4).map { "<\($0.name)>" }.joined(separator: ", ") + (children.count > 4 ? ", ..." : "")
    }

    func requireNoText(_ path: String) throws(PLCProtocolError) {
        if text.contains(where: { !$0.isWhitespace }) {
            let sample = text.trimmingCharacters(in: .whitespacesAndNewlines).prefix(40)
            throw XMLRPCDecoder.shape(path, self, "unexpected text \"\(sample)\"")
        }
    }

    /// Parses a whole document into a tree with libxml2 (FoundationXML's XMLParser). External
    /// entities are never resolved. An HTML page is recognised before parsing, because the
    /// typical one (a proxy's or web server's error page) is not well-formed XML and would
    /// otherwise produce a confusing parser error.
    static func parse(_ bytes: [UInt8]) throws(PLCProtocolError) -> XMLTree {
        guard bytes.count <= XMLRPCDecoder.maxDocumentSize else {
            throw PLCProtocolError(.malformed, stage: "xmlrpc.decode", "document of \(bytes.count) bytes exceeds \(XMLRPCDecoder.maxDocumentSize)")
        }
        if let title = HTMLSniffer.title(of: bytes) {
            throw PLCProtocolError(.http, stage: "xmlrpc.decode", "got an HTML page, not XML-RPC" + (title.isEmpty ? "" : " (title: \"\(title)\")"))
        }
        guard bytes.contains(where: { $0 == UInt8(ascii: "<") }) else {
            let sample = String(decoding: bytes.prefix(60), as: UTF8.self)
            throw PLCProtocolError(.malformed, stage: "xmlrpc.decode", bytes.isEmpty ? "empty document" : "not XML: \"\(sample)\"")
        }
        let parser = XMLParser(data: Data(bytes))
        parser.shouldResolveExternalEntities = false
        let builder = TreeBuilder()
        parser.delegate = builder
        let ok = parser.parse()
        if let problem = builder.problem {
            throw PLCProtocolError(.malformed, stage: "xmlrpc.decode", problem)
        }
        guard ok, let root = builder.root, builder.stack.isEmpty else {
            let reason = parser.parserError.map { Self.describe($0) } ?? "unexpected end of document"
            throw PLCProtocolError(.malformed, stage: "xmlrpc.decode",
                                   "malformed XML at line \(parser.lineNumber), column \(parser.columnNumber): \(reason)"
                                   + (builder.stack.isEmpty ? "" : " (inside <\(builder.stack.map(\.name).joined(separator: "/"))>: truncated?)"))
        }
        // libxml2 (through XMLParser) stops at the end of the root element without complaining
        // about what follows; XML allows only whitespace there (and comments, which XML-RPC
        // peers do not send).
        var end = bytes.count
        while end > 0, [9, 10, 13, 32].contains(bytes[end - 1]) { end -= 1 }
        let closing = Array("</\(root.name)>".utf8)
        let selfClosing = end >= 2 && bytes[end - 2] == UInt8(ascii: "/") && bytes[end - 1] == UInt8(ascii: ">") && root.children.isEmpty
        guard selfClosing || (end >= closing.count && bytes[(end - closing.count)..<end].elementsEqual(closing)) else {
            throw PLCProtocolError(.malformed, stage: "xmlrpc.decode", "content after the root element </\(root.name)> (at line \(parser.lineNumber))")
        }
        return root
    }

    private static func describe(_ error: any Error) -> String {
        let ns = error as NSError
        if let code = XMLParser.ErrorCode(rawValue: ns.code) {
            switch code {
            case .prematureDocumentEndError: return "document ends early (truncated)"
            case .tagNameMismatchError: return "closing tag does not match the opening one"
            case .documentStartError, .emptyDocumentError: return "no XML document"
            default: return "libxml2 error \(ns.code)"
            }
        }
        return "\(error)"
    }
}

private final class TreeBuilder: NSObject, XMLParserDelegate {
    var root: XMLTree?
    var stack: [XMLTree] = []
    var problem: String?

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
        let element = XMLTree(name: elementName, line: parser.lineNumber)
        if let parent = stack.last {
            parent.children.append(element)
        } else if root == nil {
            root = element
        } else {
            problem = "second root element <\(elementName)> at line \(parser.lineNumber)"
            parser.abortParsing()
        }
        if stack.count > XMLRPCDecoder.maxDepth * 3 {
            problem = "elements nested deeper than \(XMLRPCDecoder.maxDepth * 3) at line \(parser.lineNumber)"
            parser.abortParsing()
        }
        stack.append(element)
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        stack.removeLast()
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        stack.last?.text += string
    }

    func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
        stack.last?.text += String(decoding: CDATABlock, as: UTF8.self)
    }

    func parser(_ parser: XMLParser, foundExternalEntityDeclarationWithName name: String, publicID: String?, systemID: String?) {
        problem = "external entity \"\(name)\" refused"
        parser.abortParsing()
    }
}

/// Recognises an HTML document (an error page from a web server or proxy) and extracts its title.
enum HTMLSniffer {
    /// nil when the bytes do not start like HTML; "" when HTML without a title.
    static func title(of bytes: [UInt8]) -> String? {
        // ASCII-only lowercasing keeps byte offsets identical between the two arrays.
        let original = Array(bytes.prefix(8192))
        let lower = original.map { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) ? $0 + 32 : $0 }
        var i = 0
        if lower.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3 }
        func skipSpace() { while i < lower.count, [9, 10, 13, 32].contains(lower[i]) { i += 1 } }
        func hasPrefix(_ s: String, at p: Int) -> Bool { lower[min(p, lower.count)...].starts(with: Array(s.utf8)) }
        func find(_ s: String, from p: Int) -> Int? {
            let needle = Array(s.utf8)
            guard needle.count <= lower.count else { return nil }
            var j = p
            while j + needle.count <= lower.count {
                if lower[j] == needle[0] && lower[j..<(j + needle.count)].elementsEqual(needle) { return j }
                j += 1
            }
            return nil
        }
        while true {
            skipSpace()
            if hasPrefix("<?", at: i) || hasPrefix("<!--", at: i) {
                guard let end = find(hasPrefix("<?", at: i) ? "?>" : "-->", from: i) else { return nil }
                i = end + 2
                continue
            }
            break
        }
        guard hasPrefix("<!doctype html", at: i) || hasPrefix("<html", at: i) else { return nil }
        guard let open = find("<title", from: i), let gt = lower[open...].firstIndex(of: UInt8(ascii: ">")),
              let close = find("</title>", from: gt) else { return "" }
        let text = String(decoding: original[(gt + 1)..<close], as: UTF8.self)
        return String(text.trimmingCharacters(in: .whitespacesAndNewlines).prefix(120))
    }
}
