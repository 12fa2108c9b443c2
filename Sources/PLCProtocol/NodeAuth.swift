/// PLCAPI's node authentication structures.
///
/// BootAuth (`AuthMethod: "hmac"`): the node proves it holds its node key by sending
/// `value = hex(HMAC-SHA1(node_key, "[" + "".join(sorted(canonicalize(params))) + "]"))`, where
/// `params` are the call's parameters *after* the auth struct (none for GetSession, so the
/// message is "[]"). PLCAPI (PLC/Auth.py `BootAuth`) and NodeManager (plcapi.py) compute it as:
///   - a list or tuple is flattened, recursively;
///   - of a dict only the *values* are taken (keys are not hashed), recursively;
///   - every scalar becomes Python's `str()` of it: ints in decimal, booleans "True"/"False",
///     None "None", floats as Python 3's repr ("0.1", "1e+16"), a DateTime its wire text,
///     a Binary its bytes read as Latin-1;
///   - the strings are sorted by code point, concatenated, wrapped in brackets, UTF-8 encoded.
/// The server recomputes it from the parameters it decoded, so both sides must agree on the
/// string form of every value that travels.
///
/// SessionAuth (`AuthMethod: "session"`): the key GetSession returned. A node has at most one
/// session at a time (a new GetSession replaces the old one) and node sessions do not expire.
public enum NodeAuth {
    public static func canonicalize(_ params: [XMLRPCValue]) -> [String] {
        var values: [String] = []
        for param in params { collect(param, into: &values) }
        return values
    }

    private static func collect(_ value: XMLRPCValue, into values: inout [String]) {
        switch value {
        case .array(let items): for item in items { collect(item, into: &values) }
        case .structure(let members): for item in members.values { collect(item, into: &values) }
        case .int(let n): values.append(String(n))
        case .bool(let b): values.append(b ? "True" : "False")
        case .string(let s): values.append(s)
        case .double(let d): values.append(pythonRepr(d))
        case .dateTime(let s): values.append(s)
        case .base64(let bytes): values.append(String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) })))
        case .nil: values.append("None")
        }
    }

    /// The exact text that is MACed.
    public static func message(_ params: [XMLRPCValue]) -> String {
        // Python compares str by code point; Swift's String `<` does not (it compares
        // canonically equivalent forms), so sort on the scalars.
        let sorted = canonicalize(params).sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
        return "[" + sorted.joined() + "]"
    }

    public static func hmac(key: String, params: [XMLRPCValue]) -> String {
        HMACSHA1.hex(key: Array(key.utf8), message: Array(message(params).utf8))
    }

    /// `{'AuthMethod': 'hmac', 'node_id': N, 'value': hex}` for a call with these parameters.
    public static func hmacAuth(_ credentials: NodeCredentials, params: [XMLRPCValue]) -> XMLRPCValue {
        .structure(["AuthMethod": .string("hmac"), "node_id": .int(credentials.nodeID),
                    "value": .string(hmac(key: credentials.nodeKey, params: params))])
    }

    /// `{'AuthMethod': 'session', 'session': key}`.
    public static func sessionAuth(_ session: String) -> XMLRPCValue {
        .structure(["AuthMethod": .string("session"), "session": .string(session)])
    }

    /// Python 3's `repr(float)`: the shortest digits that round-trip (Swift computes the same
    /// digits), written in fixed notation when the decimal exponent is in -4..<16, otherwise as
    /// `d.ddde+XX`; fixed notation always has a fractional part ("1.0").
    public static func pythonRepr(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
        var text = Substring(d.description)
        let negative = text.hasPrefix("-")
        if negative { text = text.dropFirst() }
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exponent = Int(text[text.index(after: e)...]) ?? 0
            text = text[..<e]
        }
        // value = 0.DIGITS x 10^point
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        let whole = String(parts[0]), fraction = parts.count > 1 ? String(parts[1]) : ""
        var digits = whole + fraction
        var point = whole.count + exponent
        while digits.hasPrefix("0") { digits.removeFirst(); point -= 1 }
        while digits.hasSuffix("0") { digits.removeLast() }
        let sign = negative ? "-" : ""
        if point > -4 && point <= 16 {
            if point <= 0 { return sign + "0." + String(repeating: "0", count: -point) + digits }
            if digits.count <= point { return sign + digits + String(repeating: "0", count: point - digits.count) + ".0" }
            let cut = digits.index(digits.startIndex, offsetBy: point)
            return sign + digits[..<cut] + "." + digits[cut...]
        }
        let mantissa = digits.count == 1 ? digits : String(digits.prefix(1)) + "." + digits.dropFirst()
        let e = point - 1
        return sign + mantissa + "e" + (e < 0 ? "-" : "+") + (abs(e) < 10 ? "0" : "") + String(abs(e))
    }
}
