/// JSON string literals read as bytes (RFC 8259), with nothing but the standard library: one
/// reader for PLCProtocol's JSONScanner and for vsh, which is a static program that links no
/// Foundation.
public enum JSONString {
    /// Why a string literal could not be read.
    public enum Failure: Error, Sendable, CustomStringConvertible {
        case unterminated, controlCharacter, invalidEscape, invalidUnicodeEscape, unpairedSurrogate

        public var description: String {
            switch self {
            case .unterminated: "unterminated string"
            case .controlCharacter: "control character in a string"
            case .invalidEscape: "invalid escape"
            case .invalidUnicodeEscape: "invalid \\u escape"
            case .unpairedSurrogate: "unpaired surrogate"
            }
        }
    }

    /// The string literal whose opening quote is at `index`, its escapes resolved, as UTF-8. On
    /// return `index` is just past the closing quote; on failure, at the offending byte.
    public static func read(_ bytes: [UInt8], at index: inout Int) throws(Failure) -> [UInt8] {
        index += 1  // the opening quote
        var out: [UInt8] = []
        while true {
            // The plain run up to the next quote or backslash.
            while index < bytes.count, bytes[index] != UInt8(ascii: "\""), bytes[index] != UInt8(ascii: "\\") {
                guard bytes[index] >= 0x20 else { throw .controlCharacter }
                out.append(bytes[index])
                index += 1
            }
            guard index < bytes.count else { throw .unterminated }
            if bytes[index] == UInt8(ascii: "\"") {
                index += 1
                return out
            }
            index += 1  // the backslash
            guard index < bytes.count else { throw .unterminated }
            let escape = bytes[index]
            index += 1
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4(bytes, &index)
                if (0xD800..<0xDC00).contains(scalar) {
                    // A surrogate pair: the low half must follow as another \u escape.
                    guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                        throw .unpairedSurrogate
                    }
                    index += 2
                    let low = try hex4(bytes, &index)
                    guard (0xDC00..<0xE000).contains(low) else { throw .unpairedSurrogate }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(scalar) {
                    throw .unpairedSurrogate
                }
                guard let unicode = Unicode.Scalar(scalar) else { throw .invalidUnicodeEscape }
                out.append(contentsOf: String(Character(unicode)).utf8)
            default:
                throw .invalidEscape
            }
        }
    }

    private static func hex4(_ bytes: [UInt8], _ index: inout Int) throws(Failure) -> UInt32 {
        guard index + 4 <= bytes.count else { throw .invalidUnicodeEscape }
        var value: UInt32 = 0
        for byte in bytes[index..<index + 4] {
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw .invalidUnicodeEscape
            }
            value = value << 4 | UInt32(digit)
        }
        index += 4
        return value
    }
}
