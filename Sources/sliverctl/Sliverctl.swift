#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import NodeManager

/// sliverctl: the operator's command line for sliverd.
@main
struct Sliverctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sliverctl",
        abstract: "Manage the slivers of this node through sliverd.",
        subcommands: [ImageCommand.self, Create.self, SetAttributes.self, Start.self, Stop.self, Destroy.self,
                      List.self, Show.self, Top.self, Exec.self, Keys.self, Ports.self, Address.self, Sync.self, Plan.self,
                      Events.self, Ping.self])

    /// `sliverctl --socket PATH <command> ...`: a leading --socket applies to every subcommand
    /// (ArgumentParser only reads options after the subcommand name), so it becomes the default
    /// that every subcommand's --socket falls back to.
    static func main() {
        var arguments = Array(CommandLine.arguments.dropFirst())
        while arguments.count >= 2, arguments[0] == "--socket" {
            setenv("SLIVERD_SOCKET", arguments[1], 1)
            arguments.removeFirst(2)
        }
        main(arguments)
    }
}

struct Connection: ParsableArguments {
    @Option(help: "sliverd's control socket (default: $SLIVERD_SOCKET or /run/sliverd/sliverd.sock).")
    var socket: String?

    var path: String {
        socket ?? ProcessInfo.processInfo.environment["SLIVERD_SOCKET"] ?? "/run/sliverd/sliverd.sock"
    }

    /// Runs one request; errors print one line naming the field and value and exit non-zero.
    func call<T: Decodable>(_ request: ControlRequest, as type: T.Type, fds: [Int32] = []) -> T {
        do {
            return try ControlClient(socketPath: path).result(request, as: type, fds: fds)
        } catch {
            fail(error)
        }
    }

    func raw(_ request: ControlRequest) -> Data {
        do {
            let response = try ControlClient(socketPath: path).call(request)
            guard response.ok, let data = response.result else {
                fail(NodeError(NodeError.Code(rawValue: response.error?.code ?? "internal") ?? .internal, response.error?.message ?? "failed"))
            }
            return data
        } catch {
            fail(error)
        }
    }
}

func fail(_ error: NodeError) -> Never {
    FileHandle.standardError.write(Data("sliverctl: \(error.message)\n".utf8))
    exit(error.code == .notFound ? 3 : error.code == .unavailable ? 69 : 1)
}

func parseAssignments(_ items: [String]) -> [String: String] {
    var attributes: [String: String] = [:]
    for item in items {
        guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
            fail(NodeError(.invalidArgument, "invalid attribute assignment \"\(item)\": expected ATTR=VALUE", field: "set"))
        }
        attributes[String(item[..<eq])] = String(item[item.index(after: eq)...])
    }
    return attributes
}

func printJSON(_ data: Data) {
    if let object = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]),
       let pretty = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .fragmentsAllowed]) {
        print(String(decoding: pretty, as: UTF8.self))
    } else {
        print(String(decoding: data, as: UTF8.self))
    }
}

func describe(_ sliver: SliverView) {
    print("name:        \(sliver.name)")
    print("state:       \(sliver.state)")
    print("id:          \(sliver.id)")
    print("image:       \(sliver.image)")
    print("init pid:    \(sliver.initPid.map(String.init) ?? "-")")
    print("ids:         \(sliver.idBase)-\(sliver.idBase + sliver.idCount - 1) (host) = 0-\(sliver.idCount - 1) (sliver)")
    let attributes = sliver.attributes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    print("attributes:  \(attributes.isEmpty ? "(defaults)" : attributes.joined(separator: " "))")
    if let usage = sliver.usage {
        let cpu = usage.cpuNanoseconds.map { String(format: "%.2f s", Double($0) / 1e9) } ?? "-"
        let memory = usage.memoryBytes.map { "\($0 / 1024) KiB" } ?? "-"
        let peak = usage.memoryPeakBytes.map { "\($0 / 1024) KiB" } ?? "-"
        print("cpu time:    \(cpu)")
        print("memory:      \(memory) (peak \(peak))")
        print("oom kills:   \(usage.oomKills.map(String.init) ?? "-")")
        print("pids:        \(usage.pids.map(String.init) ?? "-")")
        print("cpus:        \(usage.cpus ?? "-")")
        if let used = usage.diskBytes {
            let limit = usage.diskLimitBytes.map { " of \($0 / 1024) KiB" } ?? " (no limit)"
            let inodes = usage.diskInodes.map { ", \($0) inodes" } ?? ""
            print("disk:        \(used / 1024) KiB\(limit)\(inodes)")
        }
    }
    if let network = sliver.network {
        let since = network.periodStart.map { " since " + ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: $0)) } ?? ""
        print("net sent:    \(network.bytesSent) bytes\(since) (24 h byte-cap period)")
        if let rate = network.rateBitsPerSecond, let ceil = network.ceilBitsPerSecond {
            let kbit = { (bits: UInt64) in String(format: "%.3f kbit/s", Double(bits) / 1000) }
            print("net class:   rate \(kbit(rate)), ceil \(kbit(ceil))\(network.capped ? " (capped: past net_thresh_kbyte)" : "")")
        }
    }
}

struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "image", abstract: "Reference images.",
                                                    subcommands: [Add.self, ListImages.self, Remove.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add", abstract: "Register DIR as reference image NAME.")
        @OptionGroup var connection: Connection
        @Argument var name: String
        @Argument var directory: String

        func run() {
            var request = ControlRequest(op: "image.add", name: name)
            let absolute = directory.hasPrefix("/") ? directory : FileManager.default.currentDirectoryPath + "/" + directory
            request.path = URL(fileURLWithPath: absolute).standardizedFileURL.path
            let image = connection.call(request, as: ImageRecord.self)
            print("image \(image.name) -> \(image.path)")
        }
    }

    struct ListImages: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List reference images.")
        @OptionGroup var connection: Connection
        func run() {
            for image in connection.call(ControlRequest(op: "image.list"), as: [ImageRecord].self) {
                print("\(image.name)\t\(image.path)")
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "remove", abstract: "Unregister an image no sliver uses.")
        @OptionGroup var connection: Connection
        @Argument var name: String
        func run() { _ = connection.raw(ControlRequest(op: "image.remove", name: name)) }
    }
}

struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create (and start) a sliver.")
    @OptionGroup var connection: Connection
    @Argument(help: "Slice name, PLCAPI style: site_slice.") var name: String
    @Option(help: "Reference image name.") var image: String
    @Option(name: .customLong("set"), help: "Slice attribute ATTR=VALUE (PLCAPI tag names), repeatable.") var assignments: [String] = []
    @Option(help: "File of SSH public keys (authorized_keys format) for the slice, repeatable.") var keyFile: [String] = []
    @Flag(help: "Create without starting.") var noStart = false
    @Flag(help: "Print the sliver as JSON.") var json = false

    func run() {
        var request = ControlRequest(op: "create", name: name)
        request.image = image
        request.attributes = parseAssignments(assignments)
        request.start = !noStart
        request.keys = keyFile.flatMap(readKeys)
        if json { printJSON(connection.raw(request)); return }
        let sliver = connection.call(request, as: SliverView.self)
        print("created \(sliver.name) (\(sliver.state), init pid \(sliver.initPid.map(String.init) ?? "-"))")
    }
}

struct SetAttributes: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set", abstract: "Change slice attributes (live).")
    @OptionGroup var connection: Connection
    @Argument var name: String
    @Argument(help: "ATTR=VALUE ...") var assignments: [String]

    func run() {
        var request = ControlRequest(op: "set", name: name)
        request.attributes = parseAssignments(assignments)
        _ = connection.call(request, as: SliverView.self)
    }
}

struct Start: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "start", abstract: "Start a stopped sliver.")
    @OptionGroup var connection: Connection
    @Argument var name: String
    func run() { _ = connection.call(ControlRequest(op: "start", name: name), as: SliverView.self) }
}

struct Stop: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stop a sliver (its files stay).")
    @OptionGroup var connection: Connection
    @Argument var name: String
    func run() { _ = connection.call(ControlRequest(op: "stop", name: name), as: SliverView.self) }
}

struct Destroy: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "destroy", abstract: "Destroy a sliver and everything it owns.")
    @OptionGroup var connection: Connection
    @Argument var name: String
    func run() { _ = connection.raw(ControlRequest(op: "destroy", name: name)) }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List slivers.")
    @OptionGroup var connection: Connection
    @Flag var json = false

    func run() {
        let request = ControlRequest(op: "list")
        if json { printJSON(connection.raw(request)); return }
        let slivers = connection.call(request, as: [SliverView].self)
        let rows = [["NAME", "STATE", "ID", "INIT", "IMAGE"]] + slivers.map {
            [$0.name, $0.state, String($0.id), $0.initPid.map(String.init) ?? "-", $0.image]
        }
        let widths = (0..<5).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            print(row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
                .joined(separator: "  "))
        }
    }
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show one sliver.")
    @OptionGroup var connection: Connection
    @Argument var name: String
    @Flag var json = false

    func run() {
        let request = ControlRequest(op: "show", name: name)
        if json { printJSON(connection.raw(request)); return }
        describe(connection.call(request, as: SliverView.self))
    }
}

struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "top", 
        abstract: "Live table of the slivers' resource use, sorted by CPU (Ctrl-C quits).",
        discussion: "CPU% is percent of one CPU over the last interval; MEM/PEAK current and peak memory; OOM processes killed by the OOM killer; DISK used/limit of the disk quota.")
    @OptionGroup var connection: Connection
    @Flag(help: "Print one table (CPU measured over one interval) and exit.") var once = false
    @Option(help: "Seconds between refreshes.") var interval: Double = 1

    func run() {
        guard interval > 0, interval <= 3600 else {
            fail(NodeError(.invalidArgument, "invalid interval \"\(interval)\": must be 0-3600 seconds", field: "interval"))
        }
        var previous = connection.call(ControlRequest(op: "list"), as: [SliverView].self)
        var then = monotonicSeconds()
        while true {
            usleep(UInt32(interval * 1_000_000))
            let current = connection.call(ControlRequest(op: "list"), as: [SliverView].self)
            let now = monotonicSeconds()
            let table = UsageTable.render(UsageTable.rows(previous: previous, current: current, elapsed: now - then))
            if once {
                print(table, terminator: "")
                return
            }
            // Home the cursor and clear the screen, then draw: a full redraw every interval.
            print("\u{1B}[H\u{1B}[2Jsliverd top: \(current.count) slivers, every \(interval) s\n\n" + table, terminator: "")
            fflush(nil)
            previous = current
            then = now
        }
    }

    private func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "exec", abstract: "Run a command inside a sliver: sliverctl exec NAME -- CMD...")
    @OptionGroup var connection: Connection
    @Argument var name: String
    @Argument(parsing: .captureForPassthrough) var command: [String]

    func run() {
        var argv = command
        if argv.first == "--" { argv.removeFirst() }
        guard !argv.isEmpty else { fail(NodeError(.invalidArgument, "exec needs a command after --", field: "argv")) }
        var request = ControlRequest(op: "exec", name: name)
        request.argv = argv
        if let term = ProcessInfo.processInfo.environment["TERM"] { request.env = ["TERM": term] }
        struct Exit: Decodable { let status: Int32 }
        let exit = connection.call(request, as: Exit.self, fds: [0, 1, 2])
        Foundation.exit(exit.status)
    }
}

/// Public keys from a file: one per line, blank lines and # comments skipped.
func readKeys(_ path: String) -> [String] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        fail(NodeError(.invalidArgument, "cannot read key file \(path)", field: "key-file"))
    }
    return text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
}

struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "keys", 
        abstract: "Print a slice's SSH keys (sshd's AuthorizedKeysCommand), or replace them.",
        discussion: "sshd's AuthorizedKeysCommand can be this or, faster, `vsh --authorized-keys %u` (conf/sshd_config.d/sliverd.conf).")
    @OptionGroup var connection: Connection
    @Argument var name: String
    @Option(help: "Replace the keys with those in this file (live: no restart).") var setFile: String?

    func run() {
        var request = ControlRequest(op: setFile == nil ? "keys" : "keys.set", name: name)
        if let setFile { request.keys = readKeys(setFile) }
        for key in connection.call(request, as: [String].self) { print(key) }
    }
}

struct Ports: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ports", 
        abstract: "Ports reserved on the node's public address: ports reserve|release NAME tcp|udp PORT, ports list [NAME].")
    @OptionGroup var connection: Connection
    @Argument(help: "reserve, release or list") var action: String
    @Argument var name: String?
    @Argument var proto: String?
    @Argument var port: Int?

    func run() {
        switch action {
        case "reserve", "release":
            guard let name, let proto, let port else {
                fail(NodeError(.invalidArgument, "usage: sliverctl ports \(action) NAME tcp|udp PORT", field: "ports"))
            }
            var request = ControlRequest(op: "ports.\(action)", name: name)
            request.proto = proto
            request.port = port
            _ = connection.call(request, as: [PortReservation].self)
        case "list":
            let all = connection.call(ControlRequest(op: "ports.list", name: name), as: [String: [PortReservation]].self)
            for (sliver, ports) in all.sorted(by: { $0.key < $1.key }) {
                for p in ports.sorted(by: { ($0.proto, $0.port) < ($1.proto, $1.port) }) { print("\(sliver)\t\(p.proto)\t\(p.port)") }
            }
        default:
            fail(NodeError(.invalidArgument, "unknown ports action \"\(action)\" (reserve, release, list)", field: "ports"))
        }
    }
}

struct Address: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "address", 
        abstract: "A whole public address from network.address_pool for a sliver (1:1 NAT): address assign NAME ADDR | release NAME.")
    @OptionGroup var connection: Connection
    @Argument(help: "assign or release") var action: String
    @Argument var name: String
    @Argument var address: String?

    func run() {
        guard action == "assign" || action == "release" else {
            fail(NodeError(.invalidArgument, "unknown address action \"\(action)\" (assign, release)", field: "address"))
        }
        var request = ControlRequest(op: "address.assign", name: name)
        if action == "assign" {
            guard let address else { fail(NodeError(.invalidArgument, "usage: sliverctl address assign NAME ADDRESS", field: "address")) }
            request.address = address
        }
        _ = connection.call(request, as: SliverView.self)
    }
}

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ping", abstract: "Check that sliverd answers.")
    @OptionGroup var connection: Connection
    func run() { printJSON(connection.raw(ControlRequest(op: "ping"))) }
}
