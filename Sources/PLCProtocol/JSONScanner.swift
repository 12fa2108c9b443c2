import JSONText

/// A direct JSON -> XMLRPCValue parser for `XMLRPCValue(json:)`. JSONDecoder through the
/// Codable conformance guesses each value's type by trying Bool, Int, Double, String, array and
/// struct in turn, and every failed guess throws: decoding a 1000-sliver snapshot cost the
/// daemon about 200 ms of CPU at every poll. This reads each value once (RFC 8259): numbers
/// with an integral value become ints, others doubles (as with JSONDecoder), and errors name the byte.
struct JSONScanner {
    private let bytes: [UInt8]
    private var index = 0
    /// Deeper nesting is refused rather than overflowing the stack (a snapshot needs 6 levels).
    private static let maxDepth = 512

    static func parse(_ bytes: [UInt8]) throws(PLCProtocolError) -> XMLRPCValue {
        var scanner = JSONScanner(bytes: bytes)
        let value = try scanner.value(depth: 0)
        scanner.skipWhitespace()
        guard scanner.index == bytes.count else { throw scanner.error("content after the JSON value") }
        return value
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private func error(_ what: String) -> PLCProtocolError {
        PLCProtocolError(.malformed, stage: "json.decode", "not valid JSON: \(what) at byte \(index)")
    }

    private mutating func skipWhitespace() {
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 {
            index += 1
        }
    }

    private mutating func value(depth: Int) throws(PLCProtocolError) -> XMLRPCValue {
        guard depth < Self.maxDepth else { throw error("nested deeper than \(Self.maxDepth)") }
        skipWhitespace()
        guard index < bytes.count else { throw error("unexpected end") }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            index += 1
            var members: [String: XMLRPCValue] = [:]
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return .structure(members) }
            while true {
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a member name") }
                let key = try string()
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':'") }
                index += 1
                members[key] = try value(depth: depth + 1)
                skipWhitespace()
                guard index < bytes.count else { throw error("unexpected end in an object") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                guard bytes[index] == UInt8(ascii: "}") else { throw error("expected ',' or '}'") }
                index += 1
                return .structure(members)
            }
        case UInt8(ascii: "["):
            index += 1
            var items: [XMLRPCValue] = []
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return .array(items) }
            while true {
                items.append(try value(depth: depth + 1))
                skipWhitespace()
                guard index < bytes.count else { throw error("unexpected end in an array") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                guard bytes[index] == UInt8(ascii: "]") else { throw error("expected ',' or ']'") }
                index += 1
                return .array(items)
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .nil
        default:
            return try number()
        }
    }

    private mutating func literal(_ word: StaticString) throws(PLCProtocolError) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw error("unexpected end") }
        for i in 0..<count where bytes[index + i] != word.utf8Start[i] { throw error("unexpected character") }
        index += count
    }

    private mutating func number() throws(PLCProtocolError) -> XMLRPCValue {
        let start = index
        var integral = true
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
        while index < bytes.count {
            let c = bytes[index]
            if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") {
                index += 1
            } else if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") || c == UInt8(ascii: "+") || c == UInt8(ascii: "-") {
                integral = false
                index += 1
            } else {
                break
            }
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        guard !text.isEmpty, text != "-" else { throw error("unexpected character") }
        if integral, let n = Int(text) { return .int(n) }
        guard let d = Double(text), d.isFinite else { throw error("invalid number \(text)") }
        // As JSONDecoder does: a number with an integral value (1e3, 2.0) is an int.
        if d == d.rounded(), abs(d) < 9.2e18 { return .int(Int(d)) }
        return .double(d)
    }

    /// A string at `index` (on its opening quote), escapes resolved (JSONText's reader, which vsh
    /// shares).
    private mutating func string() throws(PLCProtocolError) -> String {
        do {
            return String(decoding: try JSONString.read(bytes, at: &index), as: UTF8.self)
        } catch {
            throw self.error(error.description)
        }
    }
}
