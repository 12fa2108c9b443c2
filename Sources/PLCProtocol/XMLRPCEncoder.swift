/// Serializes XML-RPC calls and responses. Output is UTF-8 XML 1.0 with struct members in key
/// order, so the same value always gives the same bytes (plcd's answers are reproducible).
public enum XMLRPCEncoder {
    public static func encode(_ call: XMLRPCCall) throws(PLCProtocolError) -> [UInt8] {
        var out = "<?xml version=\"1.0\"?>\n<methodCall>\n<methodName>"
        try appendEscaped(call.method, to: &out, path: "methodName")
        out += "</methodName>\n<params>\n"
        for (i, param) in call.params.enumerated() {
            out += "<param>\n"
            try append(param, to: &out, path: "params[\(i)]")
            out += "</param>\n"
        }
        out += "</params>\n</methodCall>\n"
        return Array(out.utf8)
    }

    public static func encode(_ response: XMLRPCResponse) throws(PLCProtocolError) -> [UInt8] {
        var out = "<?xml version=\"1.0\"?>\n<methodResponse>\n"
        switch response {
        case .success(let value):
            out += "<params>\n<param>\n"
            try append(value, to: &out, path: "result")
            out += "</param>\n</params>\n"
        case .fault(let code, let string):
            // A fault is a struct with exactly faultCode (int) and faultString (string).
            out += "<fault>\n"
            try append(.structure(["faultCode": .int(code), "faultString": .string(string)]), to: &out, path: "fault")
            out += "</fault>\n"
        }
        out += "</methodResponse>\n"
        return Array(out.utf8)
    }

    static func append(_ value: XMLRPCValue, to out: inout String, path: String) throws(PLCProtocolError) {
        out += "<value>"
        switch value {
        case .int(let n):
            // <int> is 32-bit by the spec (Python's marshaller refuses more; PLCAPI clamps
            // `expires` to 2^31-1 for that reason). Larger values go out as the <i8> extension.
            if n >= Int(Int32.min) && n <= Int(Int32.max) {
                out += "<int>\(n)</int>"
            } else {
                out += "<i8>\(n)</i8>"
            }
        case .bool(let b):
            out += b ? "<boolean>1</boolean>" : "<boolean>0</boolean>"
        case .string(let s):
            out += "<string>"
            try appendEscaped(s, to: &out, path: path)
            out += "</string>"
        case .double(let d):
            guard d.isFinite else {
                throw PLCProtocolError(.invalidArgument, stage: "xmlrpc.encode", "\(path): double \(d) has no XML-RPC form")
            }
            out += "<double>\(d)</double>"
        case .dateTime(let s):
            guard XMLRPCDecoder.isISO8601(s) else {
                throw PLCProtocolError(.invalidArgument, stage: "xmlrpc.encode", "\(path): dateTime \"\(s)\" is not YYYYMMDDTHH:MM:SS")
            }
            out += "<dateTime.iso8601>\(s)</dateTime.iso8601>"
        case .base64(let bytes):
            out += "<base64>" + Base64.encode(bytes) + "</base64>"
        case .array(let items):
            out += "<array><data>\n"
            for (i, item) in items.enumerated() {
                try append(item, to: &out, path: "\(path)[\(i)]")
                out += "\n"
            }
            out += "</data></array>"
        case .structure(let members):
            out += "<struct>\n"
            for key in members.keys.sorted() {
                out += "<member><name>"
                try appendEscaped(key, to: &out, path: "\(path).\(key)")
                out += "</name>"
                try append(members[key]!, to: &out, path: "\(path).\(key)")
                out += "</member>\n"
            }
            out += "</struct>"
        case .nil:
            out += "<nil/>"
        }
        out += "</value>"
    }

    /// Escapes markup characters. Carriage returns are sent as a character reference because
    /// XML parsers turn a literal CR (and CRLF) into LF. Characters XML 1.0 cannot carry at all
    /// (C0 controls other than tab, LF, CR) are refused rather than silently dropped.
    static func appendEscaped(_ s: String, to out: inout String, path: String) throws(PLCProtocolError) {
        for scalar in s.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\r": out += "&#13;"
            case "\t", "\n": out.unicodeScalars.append(scalar)
            default:
                if scalar.value < 0x20 || scalar.value == 0xFFFE || scalar.value == 0xFFFF {
                    throw PLCProtocolError(.invalidArgument, stage: "xmlrpc.encode",
                                           "\(path): character U+\(String(scalar.value, radix: 16, uppercase: true)) cannot be carried in XML 1.0")
                }
                out.unicodeScalars.append(scalar)
            }
        }
    }
}

/// RFC 4648 base64 without Foundation, tolerant of whitespace (XML-RPC senders wrap lines).
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func encode(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let b0 = bytes[i], b1 = i + 1 < bytes.count ? bytes[i + 1] : 0, b2 = i + 2 < bytes.count ? bytes[i + 2] : 0
            out.append(alphabet[Int(b0 >> 2)])
            out.append(alphabet[Int((b0 & 3) << 4 | b1 >> 4)])
            out.append(i + 1 < bytes.count ? alphabet[Int((b1 & 15) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? alphabet[Int(b2 & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// nil when the text holds anything but base64 digits, whitespace and final padding.
    public static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt8] = []
        var padding = 0
        for c in text.utf8 {
            switch c {
            case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"): continue
            case UInt8(ascii: "="): padding += 1; continue
            default: break
            }
            guard padding == 0 else { return nil }
            let v: UInt8
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = c - UInt8(ascii: "A")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = c - UInt8(ascii: "a") + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0") + 52
            case UInt8(ascii: "+"): v = 62
            case UInt8(ascii: "/"): v = 63
            default: return nil
            }
            values.append(v)
        }
        guard padding <= 2, (values.count + padding) % 4 == 0, values.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(values.count * 3 / 4)
        var i = 0
        while i + 1 < values.count {
            out.append(values[i] << 2 | values[i + 1] >> 4)
            if i + 2 < values.count { out.append(values[i + 1] << 4 | values[i + 2] >> 2) }
            if i + 3 < values.count { out.append(values[i + 2] << 6 | values[i + 3]) }
            i += 4
        }
        return out
    }
}
