/// A parsed TOML document: TOML 1.0 (https://toml.io/en/v1.0.0) without dates and times, which
/// neither the configuration nor the snapshot needs (times are seconds since the epoch there).
/// The configuration (conf/sliverd.toml) and the TOML form of the GetSlivers snapshot are read by
/// this one parser (TOMLParser), so strings, numbers and comments mean the same in both.
/// Errors name the line: "line 12: unterminated multi-line string".
public struct TOMLDocument: Sendable {
    public enum Value: Sendable, Equatable {
        case string(String), integer(Int64), float(Double), bool(Bool), array([Value]), table([String: Value])
    }

    /// The top-level table.
    public let root: [String: Value]
    /// Dotted key ("daemon.state_dir", "top" at the top level) -> the line that set it. The
    /// elements of an array of tables share their keys' paths: the last one's line is kept.
    public let lines: [String: Int]
    /// The configuration's view: "" -> the top-level keys that are not tables, and each
    /// top-level table's name -> its keys.
    public let tables: [String: [String: Value]]

    public init(parsing text: String) throws(NodeError) {
        var parser = TOMLParser(text)
        (root, lines) = try parser.document()
        var tables: [String: [String: Value]] = ["": [:]]
        for (key, value) in root {
            if case .table(let members) = value { tables[key] = members } else { tables[""]?[key] = value }
        }
        self.tables = tables
    }
}
