/// The subset of TOML the configuration uses: `[table]` headers, `key = value` with basic
/// strings, integers, floats, booleans and arrays of those (one or several lines), `#` comments.
/// Errors name the line.
public struct TOMLDocument: Sendable {
    public enum Value: Sendable, Equatable {
        case string(String), integer(Int64), float(Double), bool(Bool), array([Value])
    }

    /// table name ("" for the top level) -> key -> value, plus where each key was defined.
    public private(set) var tables: [String: [String: Value]] = [:]
    public private(set) var lines: [String: Int] = [:]

    public init(parsing text: String) throws(NodeError) {
        var table = ""
        tables[""] = [:]
        var pending: (key: String, text: String, line: Int)?
        for (offset, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = offset + 1
            let line = Self.stripComment(String(raw)).trimmed
            if var open = pending {
                open.text += " " + line
                pending = open
                if Self.bracketsBalanced(open.text) {
                    try set(open.key, try Self.value(open.text, line: open.line), table: table, line: open.line)
                    pending = nil
                }
                continue
            }
            if line.isEmpty { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]"), !line.hasPrefix("[[") else { throw Self.error(number, "malformed table header \(line)") }
                table = String(line.dropFirst().dropLast()).trimmed
                guard !table.isEmpty, tables[table] == nil else { throw Self.error(number, "empty or repeated table [\(table)]") }
                tables[table] = [:]
                continue
            }
            guard let eq = line.firstIndex(of: "=") else { throw Self.error(number, "expected key = value, got \(line)") }
            let key = String(line[..<eq]).trimmed
            let valueText = String(line[line.index(after: eq)...]).trimmed
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
                throw Self.error(number, "invalid key \"\(key)\"")
            }
            if valueText.hasPrefix("[") && !Self.bracketsBalanced(valueText) {
                pending = (key, valueText, number)
                continue
            }
            try set(key, try Self.value(valueText, line: number), table: table, line: number)
        }
        if let open = pending { throw Self.error(open.line, "unterminated array for \(open.key)") }
    }

    private mutating func set(_ key: String, _ value: Value, table: String, line: Int) throws(NodeError) {
        guard tables[table]?[key] == nil else { throw Self.error(line, "duplicate key \(key)") }
        tables[table, default: [:]][key] = value
        lines[table + "." + key] = line
    }

    static func error(_ line: Int, _ message: String) -> NodeError {
        NodeError(.invalidArgument, "config line \(line): \(message)", field: "config")
    }

    static func stripComment(_ line: String) -> String {
        var inString = false
        var escaped = false
        for (i, c) in line.enumerated() {
            if escaped { escaped = false; continue }
            if c == "\\" && inString { escaped = true; continue }
            if c == "\"" { inString.toggle() }
            if c == "#" && !inString { return String(line.prefix(i)) }
        }
        return line
    }

    static func bracketsBalanced(_ text: String) -> Bool {
        var depth = 0
        var inString = false
        for c in text {
            if c == "\"" { inString.toggle() }
            if inString { continue }
            if c == "[" { depth += 1 }
            if c == "]" { depth -= 1 }
        }
        return depth == 0
    }

    static func value(_ text: String, line: Int) throws(NodeError) -> Value {
        if text.hasPrefix("\"") {
            guard text.count >= 2, text.hasSuffix("\"") else { throw error(line, "unterminated string \(text)") }
            var out = ""
            var escaped = false
            for c in text.dropFirst().dropLast() {
                if escaped {
                    switch c {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    case "\"", "\\": out.append(c)
                    default: throw error(line, "unsupported escape \\\(c)")
                    }
                    escaped = false
                } else if c == "\\" {
                    escaped = true
                } else {
                    out.append(c)
                }
            }
            return .string(out)
        }
        if text.hasPrefix("[") {
            let inner = String(text.dropFirst().dropLast()).trimmed
            if inner.isEmpty { return .array([]) }
            var items: [Value] = []
            var current = ""
            var inString = false
            for c in inner {
                if c == "\"" { inString.toggle() }
                if c == "," && !inString {
                    if !current.trimmed.isEmpty { items.append(try value(current.trimmed, line: line)) }
                    current = ""
                } else {
                    current.append(c)
                }
            }
            if !current.trimmed.isEmpty { items.append(try value(current.trimmed, line: line)) }
            return .array(items)
        }
        if text == "true" { return .bool(true) }
        if text == "false" { return .bool(false) }
        let digits = text.replacingUnderscores
        if let n = Int64(digits) { return .integer(n) }
        if let d = Double(digits) { return .float(d) }
        throw error(line, "cannot read value \(text)")
    }
}

extension String {
    var trimmed: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s.removeLast() }
        return String(s)
    }

    var replacingUnderscores: String { String(filter { $0 != "_" }) }
}
