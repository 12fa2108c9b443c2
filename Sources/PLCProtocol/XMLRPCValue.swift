/// One XML-RPC value. `int` covers `<int>`, `<i4>` and the `<i8>` extension; `nil` is the
/// `<nil/>` extension that Python's xmlrpclib emits with allow_none (PLCAPI sends None for
/// unset fields, e.g. an interface's `dns2`).
public enum XMLRPCValue: Sendable, Equatable {
    case int(Int)
    case bool(Bool)
    case string(String)
    case double(Double)
    /// `dateTime.iso8601` as sent on the wire, e.g. "20240131T23:59:00" (no time zone: XML-RPC
    /// leaves it to the parties; PLCAPI uses ints for times anyway).
    case dateTime(String)
    case base64([UInt8])
    case array([XMLRPCValue])
    case structure([String: XMLRPCValue])
    case `nil`

    /// The element name a value is sent as, for error messages.
    public var typeName: String {
        switch self {
        case .int: "int"
        case .bool: "boolean"
        case .string: "string"
        case .double: "double"
        case .dateTime: "dateTime.iso8601"
        case .base64: "base64"
        case .array: "array"
        case .structure: "struct"
        case .nil: "nil"
        }
    }

    /// A short rendering for error messages: the type and, for scalars, the value (cut).
    public var brief: String {
        switch self {
        case .int(let v): "int \(v)"
        case .bool(let v): "boolean \(v)"
        case .string(let s): "string \"\(s.count > 40 ? String(s.prefix(40)) + "..." : s)\""
        case .double(let d): "double \(d)"
        case .dateTime(let s): "dateTime \(s)"
        case .base64(let b): "base64 (\(b.count) bytes)"
        case .array(let a): "array of \(a.count)"
        case .structure(let s): "struct with \(s.count) members"
        case .nil: "nil"
        }
    }

    public subscript(key: String) -> XMLRPCValue? {
        if case .structure(let members) = self { return members[key] }
        return nil
    }
}

extension XMLRPCValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral, ExpressibleByFloatLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(arrayLiteral elements: XMLRPCValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, XMLRPCValue)...) {
        self = .structure(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
    public init(nilLiteral: ()) { self = .nil }
}

/// A `methodCall`: the method name and its positional parameters (for PLCAPI the first one is
/// always the Auth struct).
public struct XMLRPCCall: Sendable, Equatable {
    public var method: String
    public var params: [XMLRPCValue]

    public init(method: String, params: [XMLRPCValue]) {
        self.method = method
        self.params = params
    }
}

/// A `methodResponse`: exactly one value, or a fault.
public enum XMLRPCResponse: Sendable, Equatable {
    case success(XMLRPCValue)
    case fault(code: Int, string: String)
}
