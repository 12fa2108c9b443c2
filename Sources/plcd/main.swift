#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PLCProtocol

// plcd: our own PLC. Serves GetSession, GetSlivers and AuthCheck over XML-RPC/HTTP from a
// JSON data file (docs/plc.md). Prints "plcd listening on http://HOST:PORT/PLCAPI/" on stdout
// once it accepts connections (with --listen HOST:0 that line tells the chosen port).
let usage = """
usage: plcd --data FILE [--listen HOST:PORT]
  --data FILE         JSON data file: nodes, slices, initscripts, accounts (re-read when it changes)
  --listen HOST:PORT  IPv4 address and port (default 127.0.0.1:8080; port 0 = any free port)
"""

var listen = "127.0.0.1:8080"
var dataPath: String?
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--listen": listen = arguments.popFirst() ?? ""
    case "--data": dataPath = arguments.popFirst()
    case "-h", "--help":
        print(usage)
        exit(0)
    default:
        FileHandle.standardError.write(Data("plcd: unknown argument \(argument)\n\(usage)\n".utf8))
        exit(2)
    }
}
guard let dataPath else {
    FileHandle.standardError.write(Data("plcd: --data FILE is required\n\(usage)\n".utf8))
    exit(2)
}
signal(SIGPIPE, SIG_IGN)
do {
    let server = try HTTPServer(listen: listen, dataPath: dataPath)
    print("plcd listening on http://\(server.address)/PLCAPI/")
    fflush(nil)
    server.run()
} catch {
    FileHandle.standardError.write(Data("plcd: \(error)\n".utf8))
    exit(1)
}
