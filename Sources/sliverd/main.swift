#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NodeManager
import SliverResources

// The provisioning fetch child (SnapshotFetch): fetches one snapshot, prints it, exits.
if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == SnapshotFetchChild.flag {
    exit(SnapshotFetchChild.main(Array(CommandLine.arguments.dropFirst(2))))
}

// Before anything else can start a thread (see ControlServer.blockSignals).
let signalFD = ControlServer.blockSignals()

/// sliverd [--config PATH]: the node daemon, run in the foreground by systemd.
func usage() -> Never {
    print("""
    usage: sliverd [--config PATH] [--log-level LEVEL]
      --config PATH      configuration file (default /etc/sliverd/sliverd.toml; absent file = defaults)
      --log-level LEVEL  override daemon.log_level (trace debug info notice warning error critical)
    """)
    exit(2)
}

var configPath = "/etc/sliverd/sliverd.toml"
var logLevelOverride: String?
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--config":
        guard let value = arguments.popFirst() else { usage() }
        configPath = value
    case "--log-level":
        guard let value = arguments.popFirst() else { usage() }
        logLevelOverride = value
    case "--version": print("sliverd \(SliverdVersion.string)"); exit(0)
    case "-h", "--help": usage()
    default:
        FileHandle.standardError.write(Data("sliverd: unknown argument \(argument)\n".utf8))
        usage()
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("sliverd: \(message)\n".utf8))
    exit(1)
}

var config: NodeConfig
do {
    config = access(configPath, F_OK) == 0 || configPath != "/etc/sliverd/sliverd.toml"
        ? try NodeConfig.load(path: configPath) : NodeConfig()
} catch {
    fail("\(error)")
}
if let level = logLevelOverride { config.logLevel = level }
let level = Logger.Level(rawValue: config.logLevel) ?? .info
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = level
    return handler
}
let log = Logger(label: "sliverd")
guard getuid() == 0 else { fail("must run as root") }
guard signalFD >= 0 else { fail("signalfd failed: errno \(errno)") }

do {
    let driver = try CgroupDetection.detect(parent: config.cgroupParent, preference: config.cgroupVersion)
    log.info("starting", metadata: ["config": "\(configPath)", "cgroup": "\(driver.version.rawValue)",
                                    "state_dir": "\(config.stateDir)", "pid": "\(getpid())"])
    let manager = try SliverManager(config: config, cgroups: driver, logger: log)
    try manager.recover()
    // The fetch child is this binary, started as `sliverd --fetch-snapshot ...` once per poll.
    let provisioner = config.provisioning.isEnabled
        ? try Provisioner(manager: manager, executable: selfExecutable(), logger: log) : nil
    let server = try ControlServer(manager: manager, provisioner: provisioner, signalFD: signalFD, logger: log)
    server.run()
} catch {
    log.critical("cannot start", metadata: ["error": "\(error)"])
    fail("\(error)")
}

/// The running executable (for the fetch child).
func selfExecutable() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { return CommandLine.arguments[0] }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
