import Testing
@testable import NodeManager

/// TOMLDocument: the one TOML parser of the configuration and of the snapshot file.
@Suite struct TOMLTests {
    @Test func parsesTheConfigSubset() throws {
        let doc = try TOMLDocument(parsing: """
        top = 1
        [daemon]
        state_dir = "/x/y" # comment
        flag = true
        ratio = 0.5
        list = ["a", "b#c",
                "d"]
        big = 1_000
        """)
        #expect(doc.tables[""]?["top"] == .integer(1))
        #expect(doc.tables["daemon"]?["state_dir"] == .string("/x/y"))
        #expect(doc.tables["daemon"]?["flag"] == .bool(true))
        #expect(doc.tables["daemon"]?["ratio"] == .float(0.5))
        #expect(doc.tables["daemon"]?["list"] == .array([.string("a"), .string("b#c"), .string("d")]))
        #expect(doc.tables["daemon"]?["big"] == .integer(1000))
        #expect(doc.lines["top"] == 1 && doc.lines["daemon.big"] == 8)
    }

    @Test func nestedArraysOfTables() throws {
        let doc = try TOMLDocument(parsing: """
        [[slivers]]
        name = "a_one"
        [[slivers.keys]]
        key = "k1"
        [[slivers.keys]]
        key = "k2"
        [slivers.extra]
        x = 1

        [[slivers]]   # a second sliver: [[slivers.keys]] now goes into it
        name = "a_two"
        [[slivers.keys]]
        key = "k3"
        """)
        #expect(doc.root["slivers"] == .array([
            .table(["name": .string("a_one"), "keys": .array([.table(["key": .string("k1")]), .table(["key": .string("k2")])]),
                    "extra": .table(["x": .integer(1)])]),
            .table(["name": .string("a_two"), "keys": .array([.table(["key": .string("k3")])])]),
        ]))
    }

    @Test func inlineTablesAndDottedKeys() throws {
        let doc = try TOMLDocument(parsing: """
        keys = [ { key_type = "ssh", key = "ssh-ed25519 AAAA a@b" },
                 { key = 'k2' }, ]
        empty = {}
        nested = { a = { b = 1 }, c.d = true, "quoted key" = "x" }
        site.name = "here"
        """)
        #expect(doc.root["keys"] == .array([.table(["key_type": .string("ssh"), "key": .string("ssh-ed25519 AAAA a@b")]),
                                            .table(["key": .string("k2")])]))
        #expect(doc.root["empty"] == .table([:]))
        #expect(doc.root["nested"] == .table(["a": .table(["b": .integer(1)]), "c": .table(["d": .bool(true)]),
                                              "quoted key": .string("x")]))
        #expect(doc.root["site"] == .table(["name": .string("here")]))
    }

    @Test func multiLineStringsWithEscapes() throws {
        let doc = try TOMLDocument(parsing: #"""
        script = """
        #!/bin/sh
        echo "$1 \"$2\"\tdone" \u00e9\U0001F600
        joined \
           here
        ends with quotes"""""
        next = 1
        """#)
        #expect(doc.root["script"] == .string("#!/bin/sh\necho \"$1 \"$2\"\tdone\" é😀\njoined here\nends with quotes\"\""))
        #expect(doc.root["next"] == .integer(1))
        #expect(doc.lines["next"] == 7)
    }

    @Test func literalStrings() throws {
        let doc = try TOMLDocument(parsing: #"""
        path = 'C:\no\escapes "here"'
        regex = '''
        ^\d+ 'quoted' \n$
        two lines'''
        """#)
        #expect(doc.root["path"] == .string(#"C:\no\escapes "here""#))
        #expect(doc.root["regex"] == .string("^\\d+ 'quoted' \\n$\ntwo lines"))
    }

    @Test func numbersAndLineEndings() throws {
        let doc = try TOMLDocument(parsing: "b = 0xff\r\nc = 0o17 # octal\r\nd = 0b101\r\ne = -1_000\r\nf = +1.5e-3\r\ng = -inf\r\nh = 6E2\r\n")
        #expect(doc.root["b"] == .integer(255) && doc.root["c"] == .integer(15) && doc.root["d"] == .integer(5))
        #expect(doc.root["e"] == .integer(-1000) && doc.root["f"] == .float(0.0015) && doc.root["g"] == .float(-.infinity))
        #expect(doc.root["h"] == .float(600))
    }

    @Test(arguments: [
        ("a = 1\nb = \"\"\"\nabc\n", "line 2: unterminated multi-line string"),
        ("a = '''\nx", "line 1: unterminated multi-line literal string"),
        ("a = 1\n\nb = \"x", "line 3: unterminated string"),
        ("a = 'x\ny'", "line 1: unterminated literal string"),
        ("a = [1,\n2,\n", "line 1: unterminated array"),
        ("a = [1\n2]", "line 2: expected , or ] in the array"),
        ("k = 1\nk = 2", "line 2: duplicate key k"),
        ("[t]\nx = 1\n[t]", "line 3: table [t] is defined twice"),
        ("[[a]]\nx = 1\n[a]", "line 3: [a]: a is already an array of tables"),
        ("[a]\n[[a]]", "line 2: [[a]]: a is already a table"),
        ("a = { b = 1 }\n[a.c]", "line 2: a is already a value (an inline table)"),
        ("a = [1]\n[[a]]", "line 2: [[a]]: a is already a value (an array)"),
        ("x = \"\\q\"", "line 1: invalid escape \\q"),
        ("x = \"\\u12\"", "line 1: invalid escape \\u12: 4 hex digits"),
        ("x = \"\\uD800\"", "line 1: invalid escape \\uD800"),
        ("x = \"a\u{01}\"", "line 1: control character U+0001 in a string"),
        ("\n\nd = 1979-05-27", "line 3: 1979-05-27: dates and times are not supported"),
        ("t = 07:32:00", "dates and times are not supported"),
        ("a = 1 b = 2", "line 1: expected the end of the line, got \"b\""),
        ("x = 01", "line 1: invalid value 01"),
        ("x = 1__0", "invalid value 1__0"),
        ("x = 0x_ff", "invalid value 0x_ff"),
        ("x = 1.", "invalid value 1."),
        ("x = .5", "invalid value .5"),
        ("x = yes", "invalid value yes"),
        ("x = 99999999999999999999", "invalid value 99999999999999999999"),
        ("x = ", "line 1: expected a value, got the end of the text"),
        ("x\n", "line 1: expected = after the key x, got the end of the line"),
        ("[a", "line 1: expected ] to close the header [a, got the end of the text"),
        ("[[a]\n", "expected ]] to close the header [[a"),
        ("t = { a = 1,\n b = 2 }", "line 1: expected a key, got the end of the line"),
        ("t = { a = 1, }", "expected a key, got \"}\""),
        ("x = [1, 2", "unterminated array"),
    ])
    func refusesNamingTheLine(_ text: String, _ fragment: String) {
        do {
            let doc = try TOMLDocument(parsing: text)
            Issue.record("accepted: \(doc.root)")
        } catch {
            #expect(error.message.contains(fragment), "\(error.message)")
            #expect(error.code == .invalidArgument)
        }
    }

    @Test func deepNestingIsRefused() {
        let deep = "x = " + String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(throws: NodeError.self) { try TOMLDocument(parsing: deep) }
    }
}
