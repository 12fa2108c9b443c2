#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import PLCProtocol

@Suite struct XMLRPCCodecTests {
    static let everyType: XMLRPCValue = [
        "int": 42, "negative": -7, "big": .int(5_000_000_000), "bool": true, "no": false,
        "string": "a < b & c > d \"q\" 'x' é ☃\ttab\nline\r\ncrlf", "empty": "",
        "double": 0.25, "date": .dateTime("20240131T23:59:00"), "bytes": .base64([0, 1, 2, 250, 255]),
        "list": [1, "two", [3, nil], [:]], "none": nil, "nested": ["a": ["b": ["c": 1]]],
    ]

    @Test func callRoundTrip() throws {
        let call = XMLRPCCall(method: "GetSlivers", params: [Self.everyType, [], "x"])
        let bytes = try XMLRPCEncoder.encode(call)
        #expect(try XMLRPCDecoder.decodeCall(bytes) == call)
    }

    @Test func responseAndFaultRoundTrip() throws {
        for response: XMLRPCResponse in [.success(Self.everyType), .success(.nil), .fault(code: 103, string: "Failed to authenticate call: No such session")] {
            #expect(try XMLRPCDecoder.decodeResponse(try XMLRPCEncoder.encode(response)) == response)
        }
    }

    @Test func readsWhatPythonWrites() throws {
        // As Python's xmlrpclib formats it: untyped <value> strings, <i4>, <nil/>, indentation.
        let text = """
        <?xml version='1.0'?>
        <methodResponse>
        <params>
        <param>
        <value><struct>
        <member>
        <name>plain</name>
        <value>  untyped string  </value>
        </member>
        <member>
        <name>n</name>
        <value><i4>12</i4></value>
        </member>
        <member>
        <name>dns2</name>
        <value><nil/></value>
        </member>
        <member>
        <name>ok</name>
        <value><boolean>1</boolean></value>
        </member>
        <member>
        <name>list</name>
        <value><array><data>
        <value><string>a</string></value>
        <value><int> 7 </int></value>
        </data></array></value>
        </member>
        </struct></value>
        </param>
        </params>
        </methodResponse>
        """
        let decoded = try XMLRPCDecoder.decodeResponse(Array(text.utf8))
        #expect(decoded == .success(["plain": "  untyped string  ", "n": 12, "dns2": nil, "ok": true, "list": ["a", 7]]))
    }

    static let malformed: [(String, PLCProtocolError.Code, String)] = [
        ("<?xml version='1.0'?><methodResponse><params><param><value><int>1</int>", .malformed, "line"),
        ("<methodResponse><params><param><value><struct><member><name>a</name>", .malformed, "truncated"),
        ("", .malformed, "empty"),
        ("Internal Server Error", .malformed, "not XML"),
        ("<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body><br></body></html>", .http, "502 Bad Gateway"),
        ("<html><body>oops</body></html>", .http, "HTML"),
        ("<methodCall><methodName>x</methodName></methodCall>", .invalidShape, "expected <methodResponse>, got <methodCall>"),
        ("<methodResponse><params><param><value><int>abc</int></value></param></params></methodResponse>", .invalidShape, "\"abc\" is not an integer"),
        ("<methodResponse><params><param><value><boolean>2</boolean></value></param></params></methodResponse>", .invalidShape, "not a boolean"),
        ("<methodResponse><params><param><value><double>x</double></value></param></params></methodResponse>", .invalidShape, "not a finite double"),
        ("<methodResponse><params><param><value><dateTime.iso8601>2024</dateTime.iso8601></value></param></params></methodResponse>", .invalidShape, "YYYYMMDD"),
        ("<methodResponse><params><param><value><base64>!!</base64></value></param></params></methodResponse>", .invalidShape, "base64"),
        ("<methodResponse><params><param><value><float>1</float></value></param></params></methodResponse>", .invalidShape, "unknown value type <float>"),
        ("<methodResponse><params><param><value><int>1</int></value></param><param><value>2</value></param></params></methodResponse>", .invalidShape, "exactly one <param>"),
        ("<methodResponse><params><param><value><struct><member><name>a</name><value>1</value></member><member><name>a</name><value>2</value></member></struct></value></param></params></methodResponse>", .invalidShape, "duplicate member \"a\""),
        ("<methodResponse><params><param><value><struct>junk<member><name>a</name><value>1</value></member></struct></value></param></params></methodResponse>", .invalidShape, "unexpected text \"junk\""),
        ("<methodResponse><params><param><value><array><value>1</value></array></value></param></params></methodResponse>", .invalidShape, "<data>"),
        ("<methodResponse><fault><value><struct><member><name>faultCode</name><value>x</value></member></struct></value></fault></methodResponse>", .invalidShape, "faultCode must be an int"),
        ("<methodResponse><params><param><value><int>1</int></value></param></params></methodResponse><x/>", .malformed, "after the root"),
    ]

    @Test(arguments: 0..<malformed.count)
    func refusesMalformed(_ index: Int) {
        let (text, code, fragment) = Self.malformed[index]
        do {
            let value = try XMLRPCDecoder.decodeResponse(Array(text.utf8))
            Issue.record("accepted \(text): \(value)")
        } catch {
            #expect(error.code == code, "\(error)")
            #expect(error.message.contains(fragment), "\(error)")
            #expect(error.stage == "xmlrpc.decode")
        }
    }

    @Test func errorsNameThePath() {
        let text = "<methodResponse><params><param><value><struct><member><name>slivers</name><value><array><data><value><int>1</int></value><value><i4>x</i4></value></data></array></value></member></struct></value></param></params></methodResponse>"
        #expect {
            try XMLRPCDecoder.decodeResponse(Array(text.utf8))
        } throws: { error in
            (error as? PLCProtocolError)?.message.contains("member[slivers]/value/array/data/value[1]/i4") == true
        }
    }

    @Test func encoderRefusesWhatXMLCannotCarry() {
        #expect(throws: PLCProtocolError.self) { try XMLRPCEncoder.encode(XMLRPCCall(method: "m", params: ["bell\u{7}"])) }
        #expect(throws: PLCProtocolError.self) { try XMLRPCEncoder.encode(XMLRPCCall(method: "m", params: [.double(.nan)])) }
        #expect(throws: PLCProtocolError.self) { try XMLRPCEncoder.encode(XMLRPCCall(method: "m", params: [.dateTime("yesterday")])) }
    }

    @Test func base64() {
        for n in 0..<8 {
            let bytes = (0..<n).map { UInt8($0 * 37 & 255) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
        #expect(Base64.encode(Array("foobar".utf8)) == "Zm9vYmFy")
        #expect(Base64.decode("Zm9v\nYmE=") == Array("fooba".utf8))
        #expect(Base64.decode("Zm9=v") == nil)
    }

    /// 10,000 GetSlivers-sized calls through encoder and decoder (the speed is printed; the
    /// bound only catches a pathological regression in a debug build).
    @Test func speedOf10000Calls() throws {
        let call = XMLRPCCall(method: "GetSlivers", params: [NodeAuth.sessionAuth("c2Vzc2lvbg=="), ["name": "pl_x", "ids": [1, 2, 3], "ok": true]])
        let start = Date()
        for _ in 0..<10_000 {
            _ = try XMLRPCDecoder.decodeCall(try XMLRPCEncoder.encode(call))
        }
        let seconds = Date().timeIntervalSince(start)
        print("xmlrpc: 10,000 calls encoded and decoded in \(String(format: "%.2f", seconds)) s")
        #expect(seconds < 60)
    }

    /// A GetSlivers answer for 1000 slivers (keys, 6 attributes each): bytes on the wire, then
    /// decode + typed snapshot, as a poll does.
    @Test func speedOf1000SliverSnapshot() throws {
        let slivers = (0..<1000).map { i in
            SliversSnapshot.Sliver(name: "site\(i)_slice", sliceID: i, expires: 2_000_000_000,
                                   keys: [SliversSnapshot.Key(key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI\(i) user@example.org")],
                                   attributes: ["cpu_share": "2", "disk_max": "1000000", "net_max_rate": "10000", "vref": "debian",
                                                "initscript": "hello", "enabled": "1"].sorted { $0.key < $1.key }.map { SliversSnapshot.Attribute($0.key, $0.value) })
        }
        let snapshot = SliversSnapshot(timestamp: 1, nodeID: 1, slivers: slivers)
        let wire = try XMLRPCEncoder.encode(.success(snapshot.xmlrpcValue))
        let start = Date()
        guard case .success(let value) = try XMLRPCDecoder.decodeResponse(wire) else { Issue.record("fault"); return }
        let decoded = try SliversSnapshot(xmlrpc: value)
        let seconds = Date().timeIntervalSince(start)
        print("xmlrpc: GetSlivers of 1000 slivers (\(wire.count / 1024) KiB) decoded in \(String(format: "%.3f", seconds)) s")
        #expect(decoded == snapshot)
    }
}

@Suite struct HMACTests {
    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
    static func unhex(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        var chars = Array(s.utf8)[...]
        while chars.count >= 2 {
            out.append(UInt8(String(decoding: chars.prefix(2), as: UTF8.self), radix: 16)!)
            chars = chars.dropFirst(2)
        }
        return out
    }

    @Test func sha1Vectors() {
        #expect(Self.hex(SHA1.hash(Array("abc".utf8))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(Self.hex(SHA1.hash([UInt8]())) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(Self.hex(SHA1.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))) == "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        #expect(Self.hex(SHA1.hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
    }

    /// RFC 2202 section 3: the seven HMAC-SHA1 test cases.
    static let rfc2202: [(key: [UInt8], data: [UInt8], digest: String)] = [
        ([UInt8](repeating: 0x0b, count: 20), Array("Hi There".utf8), "b617318655057264e28bc0b6fb378c8ef146be00"),
        (Array("Jefe".utf8), Array("what do ya want for nothing?".utf8), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
        ([UInt8](repeating: 0xaa, count: 20), [UInt8](repeating: 0xdd, count: 50), "125d7342b9ac11cd91a39af48aa17b4f63f175d3"),
        (unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"), [UInt8](repeating: 0xcd, count: 50), "4c9007f4026250c6bc8414f9bf50c86c2d7235da"),
        ([UInt8](repeating: 0x0c, count: 20), Array("Test With Truncation".utf8), "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04"),
        ([UInt8](repeating: 0xaa, count: 80), Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8), "aa4ae5e15272d00e95705637ce8a3b55ed402112"),
        ([UInt8](repeating: 0xaa, count: 80), Array("Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data".utf8), "e8e99d0f45237d786d6bbaa7965c7808bbff1a91"),
    ]

    @Test(arguments: 0..<rfc2202.count)
    func rfc2202Vector(_ i: Int) {
        let v = Self.rfc2202[i]
        #expect(HMACSHA1.hex(key: v.key, message: v.data) == v.digest)
    }
}

@Suite struct CanonicalizationTests {
    // Expected values computed with Python 3's hmac/hashlib over str() of the flattened values,
    // as PLCAPI's BootAuth and NodeManager's plcapi.py do.
    @Test func noParametersIsEmptyBrackets() {
        #expect(NodeAuth.message([]) == "[]")
        #expect(NodeAuth.hmac(key: "key", params: []) == "dffa127acc37a7b6956e1caeb4b4bc9cd731a98e")
    }

    @Test func flattensListsTakesDictValuesStrsScalars() {
        let params: [XMLRPCValue] = [
            ["name": "pl_test", "flag": true, "n": 12, "x": nil],
            [1, [2, "b"], false],
            "Zeta", 0.1, 1e16, 1e15, 1e-5, 0.0001, -2.5,
        ]
        #expect(NodeAuth.message(params) == "[-2.50.00010.111000000000000000.0121e+161e-052FalseNoneTrueZetabpl_test]")
        #expect(NodeAuth.hmac(key: "0123456789abcdef", params: params) == "d4f0ea1e15be9cdf802d8107f54928c905c59e83")
    }

    @Test func documentedExamples() {
        // docs/plc.md's table.
        #expect(NodeAuth.message([12]) == "[12]")
        #expect(NodeAuth.message([["name": "pl_test", "flag": true, "n": 12, "x": nil], [1, [2, "b"], false], "Zeta"])
                == "[1122FalseNoneTrueZetabpl_test]")
        #expect(NodeAuth.message([0.1, 1e16, 1e-5]) == "[0.11e+161e-05]")
    }

    @Test func sortsByCodePoint() {
        #expect(NodeAuth.message(["é", "e", "Z", "ä"]) == "[Zeäé]")
        #expect(NodeAuth.hmac(key: "k", params: ["é", "e", "Z", "ä"]) == "533d63e80a6f440df269930494c3979b17b74a1f")
    }

    @Test func hmacAuthStruct() {
        let auth = NodeAuth.hmacAuth(NodeCredentials(nodeID: 12, nodeKey: "key"), params: [])
        #expect(auth == ["AuthMethod": "hmac", "node_id": 12, "value": "dffa127acc37a7b6956e1caeb4b4bc9cd731a98e"])
        #expect(NodeAuth.sessionAuth("s") == ["AuthMethod": "session", "session": "s"])
    }

    @Test(arguments: [
        (0.1, "0.1"), (1e16, "1e+16"), (1e15, "1000000000000000.0"), (123456789012345678.0, "1.2345678901234568e+17"),
        (1e-5, "1e-05"), (0.0001, "0.0001"), (1.5e-7, "1.5e-07"), (-2.5, "-2.5"), (Double.leastNonzeroMagnitude, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"), (100.0, "100.0"), (0.5, "0.5"), (12345.678, "12345.678"), (0.0, "0.0"),
    ])
    func pythonFloatRepr(_ value: Double, _ expected: String) {
        #expect(NodeAuth.pythonRepr(value) == expected)
    }
}

@Suite struct NodeCredentialsTests {
    @Test func parsesPlnode() throws {
        let text = """
        # written by the boot CD
        IP_METHOD="dhcp"
        HOST_NAME="node1"
        NODE_ID="12"
        NODE_KEY="79efbe871722771675de604a227db8386bc6ef482a4b74"

        """
        let credentials = try NodeCredentials(plnode: text)
        #expect(credentials == NodeCredentials(nodeID: 12, nodeKey: "79efbe871722771675de604a227db8386bc6ef482a4b74"))
        #expect(!credentials.description.contains("79efbe"))
        #expect(try NodeCredentials(plnode: "NODE_ID=7\nNODE_KEY='a=b'\n") == NodeCredentials(nodeID: 7, nodeKey: "a=b"))
    }

    @Test(arguments: ["NODE_KEY=\"k\"", "NODE_ID=\"x\"\nNODE_KEY=\"k\"", "NODE_ID=\"12\"", "NODE_ID=\"12\"\nNODE_KEY=\"\"",
                      "NODE_ID=\"12\nNODE_KEY=\"k\"", "garbage line\nNODE_ID=1\nNODE_KEY=k", "NODE_ID=-3\nNODE_KEY=k"])
    func refusesBadText(_ text: String) {
        #expect(throws: PLCProtocolError.self) { try NodeCredentials(plnode: text) }
    }

    @Test(.enabled(if: getuid() == 0, "needs root: the file must be root-owned"))
    func loadChecksOwnerAndMode() throws {
        let dir = "/tmp/plnode-test-\(UInt32.random(in: 0..<UInt32.max))"
        mkdir(dir, 0o755)
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/plnode.txt"
        try "NODE_ID=\"12\"\nNODE_KEY=\"secret\"\n".write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o600)
        #expect(try NodeCredentials.load(path: path) == NodeCredentials(nodeID: 12, nodeKey: "secret"))

        chmod(path, 0o644)
        #expect { try NodeCredentials.load(path: path) } throws: { ($0 as? PLCProtocolError)?.message.contains("readable by root only") == true }
        chmod(path, 0o640)
        #expect(throws: PLCProtocolError.self) { try NodeCredentials.load(path: path) }

        chmod(path, 0o600)
        chown(path, 65534, 65534)
        #expect { try NodeCredentials.load(path: path) } throws: { ($0 as? PLCProtocolError)?.message.contains("owned by uid 65534") == true }
        chown(path, 0, 0)

        symlink(path, dir + "/link")
        #expect(throws: PLCProtocolError.self) { try NodeCredentials.load(path: dir + "/link") }
        #expect { try NodeCredentials.load(path: dir + "/absent") } throws: { ($0 as? PLCProtocolError)?.code == .credentials }
    }
}

@Suite struct PLCEndpointTests {
    @Test func parses() throws {
        let e = try PLCEndpoint(url: "https://plc.example.org/PLCAPI/")
        #expect(e.scheme == .https && e.host == "plc.example.org" && e.port == 443 && e.path == "/PLCAPI/")
        #expect(try PLCEndpoint(url: "http://127.0.0.1:8080/PLCAPI/").port == 8080)
        #expect(try PLCEndpoint(url: "http://[::1]:81").path == "/")
        #expect(try PLCEndpoint(url: "http://localhost:81/x").isLoopback)
        #expect(try PLCEndpoint(url: "https://[2001:db8::1]:8443/PLCAPI/").url == "https://[2001:db8::1]:8443/PLCAPI/")
    }

    @Test(arguments: ["http://plc.example.org/PLCAPI/", "http://10.0.0.1/", "ftp://x/", "plc.example.org", "https://:80/",
                      "https://x:99999/", "https://user:pw@x/", "http://127.0.0.1.evil.org/", "http://1270.0.0.1/"])
    func refuses(_ url: String) {
        #expect(throws: PLCProtocolError.self) { try PLCEndpoint(url: url) }
    }

    @Test func httpsNeedsACA() throws {
        #expect(throws: PLCProtocolError.self) { try PLCTransports.make(try PLCEndpoint(url: "https://plc/"), caCert: nil) }
        #expect(try PLCTransports.make(try PLCEndpoint(url: "https://plc/"), caCert: "/etc/ca.pem") is CurlTransport)
        #expect(try PLCTransports.make(try PLCEndpoint(url: "http://127.0.0.1/"), caCert: nil) is LoopbackHTTPTransport)
    }
}

@Suite struct HTTPMessageTests {
    @Test func parsesContentLengthChunkedAndEOF() throws {
        let plain = Array("HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 5\r\n\r\nhello".utf8)
        #expect(try HTTPMessage.parseResponse(plain, complete: false) == HTTPResponse(status: 200, reason: "OK", contentType: "text/xml", body: Array("hello".utf8)))
        #expect(try HTTPMessage.parseResponse(Array(plain.dropLast()), complete: false) == nil)
        #expect(throws: PLCProtocolError.self) { try HTTPMessage.parseResponse(Array(plain.dropLast()), complete: true) }
        let chunked = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\n\r\n".utf8)
        #expect(try HTTPMessage.parseResponse(chunked, complete: true)?.body == Array("hello".utf8))
        let eof = Array("HTTP/1.0 500 Oops\r\n\r\nbody".utf8)
        #expect(try HTTPMessage.parseResponse(eof, complete: false) == nil)
        #expect(try HTTPMessage.parseResponse(eof, complete: true)?.status == 500)
        #expect(throws: PLCProtocolError.self) { try HTTPMessage.parseResponse(Array("SSH-2.0-OpenSSH\r\n\r\n".utf8), complete: true) }
    }

    @Test func parsesRequests() throws {
        let request = Array("POST /PLCAPI/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc".utf8)
        #expect(try HTTPMessage.parseRequest(request)?.body == Array("abc".utf8))
        #expect(try HTTPMessage.parseRequest(Array(request.dropLast())) == nil)
        #expect(throws: PLCProtocolError.self) { try HTTPMessage.parseRequest(Array("BLAH\r\n\r\n".utf8)) }
    }
}
