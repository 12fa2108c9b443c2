#if canImport(Glibc)
import Glibc
#endif
import CSliverShim
import Foundation
import Testing
@testable import PLCProtocol
import SliverSystem

/// Tests against other implementations: Python's xmlrpc (what PLCAPI and NodeManager are built
/// on) as a client of plcd, and a real TLS server with a private CA for the curl transport.
@Suite(.serialized, .enabled(if: FileSystem.exists("/usr/bin/python3") && FileSystem.exists("/usr/bin/openssl") && FileSystem.exists("/usr/bin/curl"),
                             "needs python3, openssl and curl"))
struct PLCInteropTests {
    @Test func pythonXMLRPCClientAgainstPlcd() throws {
        let plc = try PLCDServer(data: PLCDServer.standardData)
        defer { plc.stop() }
        // NodeManager's way of calling, computed by Python itself: hmac over "[]" for
        // GetSession, over "[12]" for a GetSlivers that passes a node list.
        let script = """
        import hashlib, hmac, json, sys, xmlrpc.client
        s = xmlrpc.client.ServerProxy(sys.argv[1], allow_none=True)
        mac = lambda m: hmac.new(b"secret-key-12", m.encode(), hashlib.sha1).hexdigest()
        session = s.GetSession({"AuthMethod": "hmac", "node_id": 12, "value": mac("[]")})
        d = s.GetSlivers({"AuthMethod": "session", "session": session})
        h = s.GetSlivers({"AuthMethod": "hmac", "node_id": 12, "value": mac("[12]")}, [12])
        try:
            s.GetSession({"AuthMethod": "hmac", "node_id": 12, "value": "0" * 40})
            refused = None
        except xmlrpc.client.Fault as f:
            refused = [f.faultCode, f.faultString]
        print(json.dumps({"slivers": [x["name"] for x in d["slivers"]], "hmac_slivers": len(h["slivers"]),
                          "dns2": d["interfaces"][0]["dns2"], "enabled": d["initscripts"][0]["enabled"],
                          "check": s.AuthCheck({"AuthMethod": "session", "session": session}), "refused": refused}))
        """
        try FileSystem.writeAtomically(plc.dir + "/client.py", Array(script.utf8))
        let result = try Spawn.run(["/usr/bin/python3", plc.dir + "/client.py", plc.url])
        #expect(result.status == 0, "\(result.stderr)")
        let value = try XMLRPCValue(json: Array(result.stdout.utf8))
        #expect(value["slivers"] == ["pl_netflow", "princeton_sl1"])
        #expect(value["hmac_slivers"] == 2)
        #expect(value["dns2"] == nil as XMLRPCValue)
        #expect(value["enabled"] == true)
        #expect(value["check"] == 1)
        #expect(value["refused"] == [103, "Failed to authenticate call: Call could not be authenticated"])
    }

    @Test func httpsWithPinnedCA() throws {
        let plc = try PLCDServer(data: PLCDServer.standardData)
        defer { plc.stop() }
        let d = plc.dir
        let setup = """
        set -e
        cd \(d)
        ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
        openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj /CN=sliverd-test-ca 2>/dev/null
        openssl req $ec -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1\\n' > ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext 2>/dev/null
        openssl req -x509 $ec -keyout other.key -out other.pem -days 2 -subj /CN=other-ca 2>/dev/null
        """
        let made = try Spawn.run(["/bin/sh", "-c", setup])
        try #require(made.status == 0, "\(made.stderr)")
        // A TLS front end (as Apache is in front of PLCAPI) that forwards to plcd.
        let proxy = """
        import http.server, ssl, sys, urllib.request
        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                req = urllib.request.Request(sys.argv[1], data=body, headers={"Content-Type": "text/xml"})
                data = urllib.request.urlopen(req, timeout=10).read()
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            def log_message(self, *args):
                pass
        server = http.server.HTTPServer(("127.0.0.1", 0), H)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
        server.socket = context.wrap_socket(server.socket, server_side=True)
        print(server.server_address[1], flush=True)
        server.serve_forever()
        """
        try FileSystem.writeAtomically(d + "/proxy.py", Array(proxy.utf8))
        var out: [Int32] = [0, 0]
        _ = sliver_pipe_cloexec(&out)
        let devnull = open("/dev/null", O_RDWR | O_CLOEXEC)
        let process = try Spawn.start(["/usr/bin/python3", d + "/proxy.py", plc.url, d + "/server.pem", d + "/server.key"],
                                      stdio: (devnull, out[1], devnull))
        close(out[1]); close(devnull)
        defer {
            _ = sliver_pidfd_send_signal(process.pidfd, SIGKILL)
            var status: Int32 = 0
            _ = sliver_pidfd_wait(process.pidfd, &status, 0)
            close(process.pidfd)
        }
        var line = [UInt8]()
        var pfd = pollfd(fd: out[0], events: Int16(POLLIN), revents: 0)
        var byte: UInt8 = 0
        while line.last != UInt8(ascii: "\n"), poll(&pfd, 1, 10_000) > 0, read(out[0], &byte, 1) == 1 { line.append(byte) }
        close(out[0])
        let port = try #require(Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)))
        let endpoint = try PLCEndpoint(url: "https://127.0.0.1:\(port)/PLCAPI/")

        var client = PLCClient(transport: try PLCTransports.make(endpoint, caCert: d + "/ca.pem", timeout: 10),
                               credentials: NodeCredentials(nodeID: 12, nodeKey: "secret-key-12"))
        #expect(try client.getSlivers().slivers.map(\.name) == ["pl_netflow", "princeton_sl1"])

        // The same server with a CA that did not sign its certificate: refused before any call.
        var untrusting = PLCClient(transport: try PLCTransports.make(endpoint, caCert: d + "/other.pem", timeout: 10),
                                   credentials: NodeCredentials(nodeID: 12, nodeKey: "secret-key-12"))
        #expect { try untrusting.getSlivers() } throws: { error in
            let e = error as? PLCProtocolError
            return e?.code == .transport && e?.stage == "https.tls" && e?.message.contains("other.pem") == true
        }
    }
}
