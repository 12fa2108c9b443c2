import Testing
import JSONText
import PLCProtocol

/// JSONText's string reader, which PLCProtocol's JSON parser and vsh share (RFC 8259 strings).
struct JSONStringTests {
    func read(_ text: String) throws(JSONString.Failure) -> (String, Int) {
        let bytes = Array(text.utf8)
        var index = 0
        let out = try JSONString.read(bytes, at: &index)
        return (String(decoding: out, as: UTF8.self), index)
    }

    @Test func resolvesEveryEscape() throws {
        let (text, end) = try read(#""a\"b\\c\/d\b\f\n\r\t é \u00e9 \uD83D\uDE00" tail"#)
        #expect(text == "a\"b\\c/d\u{08}\u{0C}\n\r\t é é 😀")
        #expect(end == Array(#""a\"b\\c\/d\b\f\n\r\t é \u00e9 \uD83D\uDE00""#.utf8).count, "index just past the closing quote")
        #expect(try read(#""""#).0 == "")
    }

    @Test(arguments: [
        (#""abc"#, JSONString.Failure.unterminated),
        ("\"a\u{01}b\"", .controlCharacter),
        (#""\q""#, .invalidEscape),
        (#""\u12""#, .invalidUnicodeEscape),
        (#""\u+123""#, .invalidUnicodeEscape),
        (#""\uD800""#, .unpairedSurrogate),
        (#""\uDE00""#, .unpairedSurrogate),
        (#""\uD800\u0041""#, .unpairedSurrogate),
    ])
    func refuses(_ text: String, _ failure: JSONString.Failure) {
        #expect(throws: failure) { _ = try read(text) }
    }

    @Test func theSnapshotParserNamesTheByte() {
        do {
            _ = try XMLRPCValue(json: Array(#"{"name": "a\qb"}"#.utf8))
            Issue.record("accepted an invalid escape")
        } catch {
            #expect(error.description.contains("invalid escape at byte 13"), "\(error)")
        }
    }
}
