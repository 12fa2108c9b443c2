/// TOMLDocument's parser, one pass over the text's Unicode scalars. This file reads the
/// document's structure (lines, `[table]` and `[[array of tables]]` headers, keys); TOMLValues.swift
/// the values and the lexical pieces that keys and values share (strings, whitespace, comments).
struct TOMLParser {
    typealias Value = TOMLDocument.Value

    let text: [Unicode.Scalar]
    var index = 0
    var line = 1

    init(_ text: String) {
        var scalars = Array(text.unicodeScalars)
        if scalars.first == "\u{FEFF}" { scalars.removeFirst() }
        self.text = scalars
    }

    mutating func document() throws(NodeError) -> (root: [String: Value], lines: [String: Int]) {
        var root = Table(defined: true)
        var lines: [String: Int] = [:]
        var current: [String] = []
        while true {
            skipSpaces()
            skipComment()
            guard let c = peek() else { break }
            if c == "\n" { newline(); continue }
            if c == "[" {
                current = try header(&root)
            } else {
                let keyLine = line
                let keys = try keyPath()
                try expect("=", "after the key \(keys.joined(separator: "."))")
                skipSpaces()
                let value = try value(depth: 0)
                try Self.set(value, at: keys, in: &root, below: current, line: keyLine)
                lines[(current + keys).joined(separator: ".")] = keyLine
            }
            skipSpaces()
            skipComment()
            if let c = peek(), c != "\n" { throw error("expected the end of the line, got \(Self.describe(c))") }
        }
        return (root.value, lines)
    }

    /// `[a.b]` or `[[a.b]]`, at its first bracket; returns the path of the table it opens.
    private mutating func header(_ root: inout Table) throws(NodeError) -> [String] {
        let headerLine = line
        index += 1
        let isArray = peek() == "["
        if isArray { index += 1 }
        let path = try keyPath()
        let name = path.joined(separator: ".")
        let (open, closing) = isArray ? ("[[", "]]") : ("[", "]")
        for c in closing.unicodeScalars {
            guard peek() == c else { throw error("expected \(closing) to close the header \(open)\(name), got \(Self.describe(peek()))") }
            index += 1
        }
        guard let last = path.last else { throw error("empty table header") }
        try Self.within(&root, path.dropLast(), line: headerLine, definingParents: false) { (table) throws(NodeError) in
            switch table.entries.removeValue(forKey: last) {
            case nil:
                table.entries[last] = isArray ? .tables([Table(defined: true)]) : .table(Table(defined: true))
            case .tables(var elements)? where isArray:
                elements.append(Table(defined: true))
                table.entries[last] = .tables(elements)
            case .table(var existing)? where !isArray && !existing.defined:
                // An implicit parent (`a` of an earlier `[a.b]`) gets its own header now.
                existing.defined = true
                table.entries[last] = .table(existing)
            case .table?:
                throw Self.error(headerLine, isArray ? "[[\(name)]]: \(name) is already a table" : "table [\(name)] is defined twice")
            case .tables?:
                throw Self.error(headerLine, "[\(name)]: \(name) is already an array of tables")
            case .value(let value)?:
                throw Self.error(headerLine, "\(open)\(name)\(closing): \(name) is already a value (\(value.kind))")
            }
        }
        return path
    }

    /// Sets `keys` (dotted: `a.b = 1` sets b in table a) in the table at `current`.
    private static func set(_ value: Value, at keys: [String], in root: inout Table, below current: [String], line: Int) throws(NodeError) {
        guard let last = keys.last else { return }
        try within(&root, current[...] + keys.dropLast(), line: line, definingParents: true) { (table) throws(NodeError) in
            guard table.entries[last] == nil else { throw error(line, "duplicate key \(keys.joined(separator: "."))") }
            table.entries[last] = .value(value)
        }
    }

    /// Runs `body` on the table at `path` below `table`, creating the missing ones (defined when
    /// dotted keys create them, implicit for a header's parents); through an array of tables into
    /// its last element. Each entry is taken out while it changes so that its storage stays
    /// unique: a snapshot with thousands of `[[slivers]]` is not copied at every key.
    static func within(_ table: inout Table, _ path: ArraySlice<String>, line: Int, definingParents: Bool,
                       _ body: (inout Table) throws(NodeError) -> Void) throws(NodeError) {
        guard let key = path.first else { return try body(&table) }
        let rest = path.dropFirst()
        switch table.entries.removeValue(forKey: key) {
        case nil:
            var child = Table(defined: definingParents)
            try within(&child, rest, line: line, definingParents: definingParents, body)
            table.entries[key] = .table(child)
        case .table(var child)?:
            try within(&child, rest, line: line, definingParents: definingParents, body)
            table.entries[key] = .table(child)
        case .tables(var elements)?:
            // The header that made the array made an element too: it is never empty.
            try within(&elements[elements.count - 1], rest, line: line, definingParents: definingParents, body)
            table.entries[key] = .tables(elements)
        case .value(let value)?:
            // An inline table or a static array is complete where it is written.
            throw error(line, "\(key) is already a value (\(value.kind)), not a table")
        }
    }

    /// Keys joined by dots, each bare (A-Z a-z 0-9 _ -) or quoted; whitespace around the dots.
    mutating func keyPath() throws(NodeError) -> [String] {
        var keys: [String] = []
        while true {
            skipSpaces()
            keys.append(try simpleKey())
            skipSpaces()
            guard peek() == "." else { return keys }
            index += 1
        }
    }

    private mutating func simpleKey() throws(NodeError) -> String {
        switch peek() {
        case "\""?: return try basicString()
        case "'"?: return try literalString()
        default:
            let start = index
            while let c = peek(), Self.isBareKey(c) { index += 1 }
            guard index > start else { throw error("expected a key, got \(Self.describe(peek()))") }
            return String(String.UnicodeScalarView(text[start..<index]))
        }
    }

    static func isBareKey(_ c: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c) || c == "_" || c == "-"
    }
}

extension TOMLParser {
    /// The tree while it is built. It records what the finished Value does not: which tables a
    /// header (or a dotted key) defined, which arrays `[[...]]` may still extend, and which values
    /// are closed (inline tables, arrays written as values).
    struct Table {
        var entries: [String: Node] = [:]
        var defined: Bool

        init(defined: Bool) { self.defined = defined }

        var value: [String: TOMLDocument.Value] { entries.mapValues(\.value) }
    }

    enum Node {
        case value(TOMLDocument.Value)
        case table(Table)
        case tables([Table])

        var value: TOMLDocument.Value {
            switch self {
            case .value(let v): v
            case .table(let t): .table(t.value)
            case .tables(let ts): .array(ts.map { .table($0.value) })
            }
        }
    }
}

extension TOMLDocument.Value {
    /// For error messages.
    var kind: String {
        switch self {
        case .string: "a string"
        case .integer: "an integer"
        case .float: "a float"
        case .bool: "a boolean"
        case .array: "an array"
        case .table: "an inline table"
        }
    }
}
