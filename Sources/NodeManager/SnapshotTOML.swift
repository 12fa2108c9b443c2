import PLCProtocol

extension SliversSnapshot {
    /// The GetSlivers snapshot written in TOML (docs/plc.md): the document becomes the XML-RPC
    /// struct that a JSON file or PLC's answer becomes, and decodes through the same mapping,
    /// `SliversSnapshot(xmlrpc:)`, so the three forms cannot drift apart.
    public init(toml text: String) throws(NodeError) {
        let document = try TOMLDocument(parsing: text)
        do {
            try self.init(xmlrpc: XMLRPCValue(.table(document.root)))
        } catch {
            throw NodeError(.invalidArgument, error.description)
        }
    }
}

extension XMLRPCValue {
    /// TOML tables are structs, integers ints (Int is 64 bits on every platform sliverd runs on).
    /// TOML has no null: where PLCAPI sends None, the TOML file leaves the key out, which the
    /// snapshot mapping reads the same way.
    init(_ toml: TOMLDocument.Value) {
        switch toml {
        case .string(let s): self = .string(s)
        case .integer(let n): self = .int(Int(n))
        case .float(let d): self = .double(d)
        case .bool(let b): self = .bool(b)
        case .array(let items): self = .array(items.map(XMLRPCValue.init))
        case .table(let members): self = .structure(members.mapValues(XMLRPCValue.init))
        }
    }
}
