/// TOMLParser's values and lexical pieces: strings (basic, literal, both multi-line), integers,
/// floats, booleans, arrays, inline tables, whitespace and comments.
extension TOMLParser {
    /// Arrays and inline tables nest by recursion: deeper is refused rather than overflowing the
    /// stack (a snapshot needs 3 levels).
    static let maxDepth = 128

    mutating func value(depth: Int) throws(NodeError) -> Value {
        guard depth < Self.maxDepth else { throw error("values nested deeper than \(Self.maxDepth)") }
        switch peek() {
        case "\""?: return .string(peek(1) == "\"" && peek(2) == "\"" ? try multilineString(literal: false) : try basicString())
        case "'"?: return .string(peek(1) == "'" && peek(2) == "'" ? try multilineString(literal: true) : try literalString())
        case "["?: return try array(depth: depth)
        case "{"?: return try inlineTable(depth: depth)
        default: return try scalar()
        }
    }

    // MARK: strings

    /// `"..."`, at its opening quote: escapes resolved, on one line.
    mutating func basicString() throws(NodeError) -> String {
        index += 1
        var out = String.UnicodeScalarView()
        while true {
            guard let c = peek(), c != "\n" else { throw error("unterminated string") }
            index += 1
            switch c {
            case "\"": return String(out)
            case "\\": out.append(try escape())
            default: out.append(try Self.allowedInString(c, line: line))
            }
        }
    }

    /// `'...'`, at its opening quote: taken as written, on one line.
    mutating func literalString() throws(NodeError) -> String {
        index += 1
        var out = String.UnicodeScalarView()
        while true {
            guard let c = peek(), c != "\n" else { throw error("unterminated literal string") }
            index += 1
            if c == "'" { return String(out) }
            out.append(try Self.allowedInString(c, line: line))
        }
    }

    /// `"""..."""` (escapes, and a backslash at the end of a line joins it to the next text) or
    /// `'''...'''` (as written), at the first quote. A newline right after the opening quotes is
    /// not part of the string; CRLF is read as LF. Up to two quotes may end the content just
    /// before the closing three (`""""a""""` is `"a"`).
    mutating func multilineString(literal: Bool) throws(NodeError) -> String {
        let startLine = line
        let quote: Unicode.Scalar = literal ? "'" : "\""
        index += 3
        skipCR()
        if peek() == "\n" { newline() }
        var out = String.UnicodeScalarView()
        while true {
            skipCR()
            guard let c = peek() else {
                throw Self.error(startLine, "unterminated multi-line \(literal ? "literal " : "")string")
            }
            if c == quote, peek(1) == quote, peek(2) == quote {
                var run = 3
                while run < 5, peek(run) == quote { run += 1 }
                out.append(contentsOf: repeatElement(quote, count: run - 3))
                index += run
                return String(out)
            }
            if c == "\n" {
                out.append(c)
                newline()
            } else if c == "\\" && !literal {
                index += 1
                if try skipLineEndingBackslash() { continue }
                out.append(try escape())
            } else {
                index += 1
                out.append(try Self.allowedInString(c, line: line))
            }
        }
    }

    /// After a backslash in a multi-line basic string: if only spaces follow it on its line,
    /// skips them, the newline and all whitespace up to the next text, and returns true.
    private mutating func skipLineEndingBackslash() throws(NodeError) -> Bool {
        var ahead = index
        while ahead < text.count, text[ahead] == " " || text[ahead] == "\t" || text[ahead] == "\r" { ahead += 1 }
        guard ahead < text.count, text[ahead] == "\n" else { return false }
        index = ahead
        while let c = peek(), c == " " || c == "\t" || c == "\n" || c == "\r" {
            if c == "\n" { newline() } else { index += 1 }
        }
        return true
    }

    /// The escape after a backslash (already consumed).
    private mutating func escape() throws(NodeError) -> Unicode.Scalar {
        guard let c = peek() else { throw error("unterminated string") }
        index += 1
        switch c {
        case "b": return "\u{08}"
        case "t": return "\t"
        case "n": return "\n"
        case "f": return "\u{0C}"
        case "r": return "\r"
        case "\"", "\\": return c
        case "u", "U":
            let count = c == "u" ? 4 : 8
            let digits = String(String.UnicodeScalarView(text[index...].prefix(count).prefix { Character($0).isHexDigit }))
            guard digits.count == count, let code = UInt32(digits, radix: 16),
                  let scalar = Unicode.Scalar(code) else {
                throw error("invalid escape \\\(c)\(digits): \(count) hex digits of a Unicode scalar value expected")
            }
            index += count
            return scalar
        default:
            throw error("invalid escape \\\(c) (known: \\b \\t \\n \\f \\r \\\" \\\\ \\uXXXX \\UXXXXXXXX)")
        }
    }

    /// Control characters other than tab must be escaped (TOML: U+0000-U+001F, U+007F).
    private static func allowedInString(_ c: Unicode.Scalar, line: Int) throws(NodeError) -> Unicode.Scalar {
        guard c == "\t" || (c.value >= 0x20 && c.value != 0x7F) else { throw error(line, "control character \(describe(c)) in a string") }
        return c
    }

    // MARK: arrays and inline tables

    /// `[v, v, ...]`, over any number of lines, comments between the values, a trailing comma allowed.
    private mutating func array(depth: Int) throws(NodeError) -> Value {
        let startLine = line
        index += 1
        var items: [Value] = []
        while true {
            skipBlank()
            guard let c = peek() else { throw Self.error(startLine, "unterminated array") }
            if c == "]" { index += 1; return .array(items) }
            items.append(try value(depth: depth + 1))
            skipBlank()
            switch peek() {
            case ","?: index += 1
            case "]"?: index += 1; return .array(items)
            case nil: throw Self.error(startLine, "unterminated array")
            case let other?: throw error("expected , or ] in the array, got \(Self.describe(other))")
            }
        }
    }

    /// `{ k = v, k = v }` on one line (TOML 1.0: no newline, no trailing comma); closed once written.
    private mutating func inlineTable(depth: Int) throws(NodeError) -> Value {
        index += 1
        var table = Table(defined: true)
        skipSpaces()
        if peek() == "}" { index += 1; return .table([:]) }
        while true {
            let keyLine = line
            let keys = try keyPath()
            try expect("=", "after the key \(keys.joined(separator: "."))")
            skipSpaces()
            let item = try value(depth: depth + 1)
            guard let last = keys.last else { throw error("expected a key") }
            try Self.within(&table, keys.dropLast(), line: keyLine, definingParents: true) { (t) throws(NodeError) in
                guard t.entries[last] == nil else { throw Self.error(keyLine, "duplicate key \(keys.joined(separator: ".")) in an inline table") }
                t.entries[last] = .value(item)
            }
            skipSpaces()
            switch peek() {
            case ","?: index += 1
            case "}"?: index += 1; return .table(table.value)
            case let other: throw error("expected , or } in the inline table, got \(Self.describe(other))")
            }
        }
    }

    // MARK: booleans and numbers

    /// A boolean, integer or float: the run of characters that can make one, then checked as a whole.
    private mutating func scalar() throws(NodeError) -> Value {
        let start = index
        while let c = peek(), Self.isBareKey(c) || c == "+" || c == "." || c == ":" { index += 1 }
        let word = String(String.UnicodeScalarView(text[start..<index]))
        guard !word.isEmpty else { throw error("expected a value, got \(Self.describe(peek()))") }
        if word == "true" { return .bool(true) }
        if word == "false" { return .bool(false) }
        if let value = Self.number(word) { return value }
        if word.contains(":") || (word.count >= 5 && word.prefix(4).allSatisfy(\.isNumber) && word.dropFirst(4).first == "-") {
            throw error("\(word): dates and times are not supported (write seconds since the epoch)")
        }
        throw error("invalid value \(word)")
    }

    /// TOML's integers (decimal without leading zeros, 0x 0o 0b) and floats (fraction and/or
    /// exponent, inf, nan); `_` only between two digits.
    static func number(_ word: String) -> Value? {
        var body = Substring(word)
        var sign = ""
        if let s = body.first, s == "+" || s == "-" { sign = s == "-" ? "-" : ""; body.removeFirst() }
        if body == "inf" { return .float(sign == "-" ? -.infinity : .infinity) }
        if body == "nan" { return .float(.nan) }
        if sign.isEmpty, word.first != "+", body.count > 2, body.first == "0", let radix = ["x": 16, "o": 8, "b": 2][body.dropFirst().first.map(String.init) ?? ""] {
            let digits = body.dropFirst(2)
            guard underscoresBetweenDigits(digits, radix: radix), let n = Int64(digits.filter { $0 != "_" }, radix: radix) else { return nil }
            return .integer(n)
        }
        // Split off the exponent, then the fraction; each part is digits with single underscores.
        var mantissa = body
        let e = body.firstIndex { $0 == "e" || $0 == "E" }
        if let e {
            mantissa = body[..<e]
            var exponent = body[body.index(after: e)...]
            if let s = exponent.first, s == "+" || s == "-" { exponent.removeFirst() }
            guard underscoresBetweenDigits(exponent, radix: 10) else { return nil }
        }
        let parts = mantissa.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, parts.allSatisfy({ underscoresBetweenDigits($0, radix: 10) }) else { return nil }
        guard parts[0] == "0" || parts[0].first != "0" else { return nil }
        let clean = sign + String(body.filter { $0 != "_" })
        if parts.count == 1 && e == nil { return Int64(clean).map(Value.integer) }
        return Double(clean).map(Value.float)
    }

    /// Non-empty, digits of `radix`, each `_` between two digits.
    private static func underscoresBetweenDigits(_ text: Substring, radix: Int) -> Bool {
        var previousDigit = false
        for c in text {
            if c == "_" {
                guard previousDigit else { return false }
                previousDigit = false
            } else {
                guard c.isASCII, c.hexDigitValue.map({ $0 < radix }) == true else { return false }
                previousDigit = true
            }
        }
        return previousDigit
    }

    // MARK: whitespace, comments, errors

    func peek(_ offset: Int = 0) -> Unicode.Scalar? {
        index + offset < text.count ? text[index + offset] : nil
    }

    mutating func newline() {
        index += 1
        line += 1
    }

    /// A CR is whitespace only as part of CRLF.
    private mutating func skipCR() {
        if peek() == "\r" && peek(1) == "\n" { index += 1 }
    }

    mutating func skipSpaces() {
        while let c = peek(), c == " " || c == "\t" || (c == "\r" && peek(1) == "\n") { index += 1 }
    }

    /// A `#` comment up to (not including) the end of its line.
    mutating func skipComment() {
        guard peek() == "#" else { return }
        while let c = peek(), c != "\n" { index += 1 }
    }

    /// Whitespace, newlines and comments: what may stand between the values of an array.
    private mutating func skipBlank() {
        while true {
            skipSpaces()
            skipComment()
            guard peek() == "\n" else { return }
            newline()
        }
    }

    mutating func expect(_ c: Unicode.Scalar, _ context: String) throws(NodeError) {
        skipSpaces()
        guard peek() == c else { throw error("expected \(c) \(context), got \(Self.describe(peek()))") }
        index += 1
    }

    func error(_ message: String) -> NodeError { Self.error(line, message) }

    static func error(_ line: Int, _ message: String) -> NodeError {
        NodeError(.invalidArgument, "line \(line): \(message)")
    }

    static func describe(_ c: Unicode.Scalar?) -> String {
        guard let c else { return "the end of the text" }
        if c == "\n" { return "the end of the line" }
        if c.value < 0x20 || c.value == 0x7F { return "U+" + String(c.value, radix: 16, uppercase: true).leftPadded(4) }
        return "\"\(c)\""
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
