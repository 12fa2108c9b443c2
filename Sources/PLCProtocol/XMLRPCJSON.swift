import Foundation

/// JSON <-> XMLRPCValue, so a GetSlivers-shaped JSON file decodes through the same path as
/// PLC's XML-RPC answer. JSON true/false are booleans, integral numbers ints, other numbers
/// doubles, null nil. dateTime and base64 have no JSON form and are written as strings.
extension XMLRPCValue: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .nil }
        else if let b = try? container.decode(Bool.self) { self = .bool(b) }
        else if let n = try? container.decode(Int.self) { self = .int(n) }
        else if let d = try? container.decode(Double.self) { self = .double(d) }
        else if let s = try? container.decode(String.self) { self = .string(s) }
        else if let a = try? container.decode([XMLRPCValue].self) { self = .array(a) }
        else { self = .structure(try container.decode([String: XMLRPCValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .int(let n): try container.encode(n)
        case .bool(let b): try container.encode(b)
        case .string(let s), .dateTime(let s): try container.encode(s)
        case .double(let d): try container.encode(d)
        case .base64(let bytes): try container.encode(Base64.encode(bytes))
        case .array(let items): try container.encode(items)
        case .structure(let members): try container.encode(members)
        case .nil: try container.encodeNil()
        }
    }

    /// Parses JSON directly (JSONScanner), not through the Codable conformance above, which is
    /// an order of magnitude slower for a large snapshot.
    public init(json bytes: [UInt8]) throws(PLCProtocolError) {
        self = try JSONScanner.parse(bytes)
    }

    public func jsonBytes(pretty: Bool = false) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys]
        return Array((try? encoder.encode(self)) ?? Data("null".utf8))
    }
}
