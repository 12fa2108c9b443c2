#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import SliverIsolation
import SliverResources
import SliverSystem
import SliverNetwork
import CSliverShim

/// Owns every sliver of the node: creates, starts, stops, changes and destroys them, and brings
/// the node back into a known state after a daemon restart. Single-threaded by design: the
/// control server calls it from its one event-loop thread, so records need no locks.
public final class SliverManager {
    public let config: NodeConfig
    let store: StateStore
    let cgroups: any CgroupDriver
    /// The disk-quota backend of the storage directory ([storage] quota).
    let quota: any DiskQuota
    /// CPUs in the order whole cores are handed out (CPUTopology.allocationOrder).
    let cpuOrder: [Int]
    /// The settings last written to each running sliver's cgroups: a CPU re-plan rewrites only
    /// the slivers whose CPU part changed.
    var appliedSettings: [String: ResourceSettings] = [:]
    let launcher: SliverLauncher
    let seccompProgram: String
    var log: Logger
    public private(set) var records: [String: SliverRecord] = [:]
    /// Names whose record file exists but cannot be read: never touched (not recreated, not
    /// destroyed, their cgroups and directories not taken for orphans) until an operator acts.
    public private(set) var unreadable: Set<String> = []
    public private(set) var images: [String: ImageRecord] = [:]
    let network: NodeNetwork?
    /// Daily byte caps (bwmon), with networking only.
    let byteCaps: ByteCapMonitor?

    public init(config: NodeConfig, cgroups: any CgroupDriver, logger: Logger) throws(NodeError) {
        self.config = config
        self.cgroups = cgroups
        self.log = logger
        store = try StateStore(directory: config.stateDir)
        launcher = SliverLauncher(helper: config.resolvedHelperPath)
        network = config.networkEnabled ? try NodeNetwork(config: config) : nil
        byteCaps = config.networkEnabled ? ByteCapMonitor(stateDir: config.stateDir) : nil
        if let problem = byteCaps?.loadProblem { logger.error("daily byte caps: \(problem)") }
        seccompProgram = config.runDir + "/seccomp-default.bpf"
        do {
            try FileSystem.makeDirectories(config.storageDir, mode: 0o700)
            try FileSystem.makeDirectories(config.runDir, mode: 0o755)
        } catch {
            throw NodeError(error)
        }
        do {
            quota = try DiskQuotaBackend.open(config.diskQuota, storage: config.storageDir)
        } catch {
            throw NodeError(.unavailable, error.description, field: "storage.quota")
        }
        cpuOrder = CPUTopology.allocationOrder(cgroups.availableCPUs())
        guard FileSystem.exists(launcher.helper) else {
            throw NodeError(.unavailable, "sliver-helper not found at \(launcher.helper)", field: "daemon.helper")
        }
        // Compiled once per profile at start and reused by every sliver and every exec.
        do {
            try SeccompProfile.default.install(at: seccompProgram)
        } catch {
            throw NodeError(error)
        }
        for image in try store.loadImages() { images[image.name] = image }
    }

    // MARK: images

    public func addImage(name: String, path: String) throws(NodeError) -> ImageRecord {
        try ImageName.validate(name)
        guard path.hasPrefix("/") else { throw NodeError.invalid("path", path, "must be absolute") }
        guard FileSystem.isDirectory(path) else { throw NodeError.invalid("path", path, "is not a directory") }
        let owner: (uid: UInt32, gid: UInt32, mode: UInt32)
        do { owner = try FileSystem.statOwner(path) } catch { throw NodeError(error) }
        // The image is shared read-only by every sliver: it must not be changeable by anyone but root.
        guard owner.uid == 0, owner.mode & 0o022 == 0 else {
            throw NodeError.invalid("path", path, "must be owned by root and not group/world-writable")
        }
        guard FileSystem.exists(path + "/bin/sh") || FileSystem.isSymlink(path + "/bin/sh") else {
            throw NodeError.invalid("path", path, "has no /bin/sh: not a root filesystem")
        }
        if let existing = images[name] {
            guard existing.path == path else {
                throw NodeError(.alreadyExists, "image \"\(name)\" already registered at \(existing.path)", field: "name")
            }
            return existing
        }
        let image = ImageRecord(name: name, path: path)
        var updated = images
        updated[name] = image
        try store.saveImages(Array(updated.values))
        images = updated
        log.info("image registered", metadata: ["image": "\(name)", "path": "\(path)"])
        return image
    }

    /// An image that is not registered but exists as `<images_dir>/<name>` (what
    /// sliverd-prepare-node builds) is registered now, through addImage's checks (root-owned,
    /// not writable by others, a root filesystem): on a prepared node a slice's vref needs no
    /// `sliverctl image add`, and PLC's first snapshot does not fail for want of one.
    private func imageFromDirectory(_ name: String) throws(NodeError) -> ImageRecord? {
        guard !config.imagesDir.isEmpty else { return nil }
        try ImageName.validate(name)  // before it becomes part of a path
        let path = config.imagesDir + "/" + name
        guard FileSystem.isDirectory(path) else { return nil }
        return try addImage(name: name, path: path)
    }

    public func removeImage(name: String) throws(NodeError) {
        guard images[name] != nil else { throw NodeError(.notFound, "no image \"\(name)\"", field: "name") }
        if let user = records.values.first(where: { $0.image == name }) {
            throw NodeError(.failedPrecondition, "image \"\(name)\" is used by sliver \(user.name)", field: "name")
        }
        var updated = images
        updated[name] = nil
        try store.saveImages(Array(updated.values))
        images = updated
    }

    // MARK: lifecycle

    public func record(_ name: String) throws(NodeError) -> SliverRecord {
        guard let record = records[name] else {
            throw NodeError(.notFound, "no sliver \"\(name)\"", field: "name")
        }
        return record
    }

    public func create(name: String, image: String, attributes: [String: String], start: Bool,
                       keys: [String] = []) throws(NodeError) -> SliverRecord {
        try SliceName.validate(name)
        for key in keys { try SSHKey.validate(key) }
        guard records[name] == nil else { throw NodeError(.alreadyExists, "sliver \"\(name)\" already exists", field: "name") }
        guard !unreadable.contains(name) else {
            throw NodeError(.failedPrecondition, "sliver \"\(name)\" has an unreadable record in \(store.slivers); an operator must fix or remove it", field: "name")
        }
        var found = images[image]
        if found == nil { found = try imageFromDirectory(image) }
        guard let imageRecord = found else {
            let directory = config.imagesDir.isEmpty ? "" : "; no directory \(config.imagesDir)/\(image)"
            throw NodeError(.notFound, "unknown image \"\(image)\" (registered: \(images.keys.sorted().joined(separator: ", "))\(directory))", field: "image")
        }
        let attrs = try SliceAttributes(attributes)
        let range: IDRange
        do {
            range = try config.idAllocator.allocate(excluding: Set(records.values.map(\.idRange.slot)))
        } catch {
            throw NodeError(error)
        }
        var record = SliverRecord(name: name, image: image, imagePath: imageRecord.path, attributes: attrs,
                                  idRange: range, state: .creating, initProcess: nil,
                                  createdAt: Date().timeIntervalSince1970, startedAt: nil, sshKeys: keys)
        // Persist intent first: a crash from here on is found and rolled back at the next start.
        try persist(record)
        let layout = SliverLayout(storage: config.storageDir, name: name)
        let directories = QuotaDirectories(quota: quota, quotaID: quotaID(range))
        do {
            if layout.exists { try layout.remove(directories: directories) }  // a stale leftover of an earlier sliver
            try layout.create(owner: range, directories: directories)
            try quota.setLimit(attrs.diskLimit(defaultKiB: config.defaultDiskMaxKiB), path: layout.directory, quotaID: quotaID(range))
            try cgroups.create(name)
            try applyResources(record, plan: cpuPlan(including: start ? name : nil), frozen: false)
            record.state = .stopped
            if config.manageAccounts {
                try accounts.ensure(name)
                try accounts.writeKeys(name, keys)
            }
            if start { try launch(&record) }
            try persist(record)
        } catch {
            log.error("create failed, rolling back", metadata: ["sliver": "\(name)", "error": "\(error)"])
            teardown(name)
            if config.manageAccounts { try? accounts.remove(name) }
            records[name] = nil
            try? store.delete(name)
            throw Self.nodeError(error)
        }
        rebalanceCPU()
        log.info("sliver created", metadata: ["sliver": "\(name)", "id": "\(range.slot)", "id_base": "\(range.base)",
                                               "state": "\(record.state.rawValue)", "init_pid": "\(record.initProcess?.pid ?? 0)"])
        return record
    }

    public func start(_ name: String) throws(NodeError) -> SliverRecord {
        var record = try self.record(name)
        switch record.state {
        case .running:
            if record.initProcess?.isAlive == true { return record }
        case .creating, .destroying:
            throw NodeError(.failedPrecondition, "sliver \"\(name)\" is \(record.state.rawValue)", field: "name")
        case .stopped:
            break
        }
        do {
            // Leftovers of a previous run (its init died) go first: processes and a stale freeze.
            try cgroups.killAll(name)
            if !cgroups.exists(name) { try cgroups.create(name) }
            try applyResources(record, plan: cpuPlan(including: name), frozen: false)
            try launch(&record)
        } catch {
            record.state = .stopped
            record.initProcess = nil
            try? store.save(record)
            records[name] = record
            log.error("start failed", metadata: ["sliver": "\(name)", "error": "\(error)"])
            throw Self.nodeError(error)
        }
        try persist(record)
        rebalanceCPU()
        log.info("sliver started", metadata: ["sliver": "\(name)", "init_pid": "\(record.initProcess?.pid ?? 0)"])
        return record
    }

    /// Boots the sliver's init; afterwards freezes it if the slice is disabled (enabled=0).
    private func launch(_ record: inout SliverRecord) throws {
        var spec = LaunchSpec(
            name: record.name, idRange: record.idRange, image: record.imagePath,
            layout: SliverLayout(storage: config.storageDir, name: record.name),
            cgroups: cgroups.directories(of: record.name), seccompProgram: seccompProgram,
            capabilities: config.capabilitySet, rlimits: record.attributes.resourceLimits,
            bootProgram: config.bootProgram.isEmpty ? nil : config.bootProgram)
        if config.networkEnabled {
            spec.brokerDirectory = try prepareBrokerDirectory(record.name)
        }
        if let a = network?.assignment(record) {
            // A veth left by a previous run whose namespace is still alive would make the
            // helper's create fail (NLM_F_EXCL): it belongs to this sliver by name, so remove it.
            _ = try? LinkTable.delete(a.veth)
            spec.network = (a.veth, a.sliverIPv4.description, a.hostIPv4.description, a.sliverIPv6?.description, a.hostIPv6?.description)
        }
        let identity = try launcher.create(spec)
        try attachNetwork(record)
        record.state = .running
        record.initProcess = identity
        record.startedAt = Date().timeIntervalSince1970
        if !record.attributes.isEnabled { try cgroups.setFrozen(true, record.name) }
    }

    public func stop(_ name: String) throws(NodeError) -> SliverRecord {
        var record = try self.record(name)
        guard record.state == .running else { return record }
        stopProcesses(record)
        record.state = .stopped
        record.initProcess = nil
        try persist(record)
        rebalanceCPU()
        log.info("sliver stopped", metadata: ["sliver": "\(name)"])
        return record
    }

    /// SIGTERM to init (which passes it on and gives its processes a grace period), then the
    /// cgroup is killed for whatever is left after `stopTimeout`.
    private func stopProcesses(_ record: SliverRecord) {
        defer { detachNetwork(record) }
        try? cgroups.setFrozen(false, record.name)  // a frozen task cannot act on SIGTERM
        if let identity = record.initProcess, identity.isAlive {
            let pidfd = sliver_pidfd_open_checked(identity)
            if pidfd >= 0 {
                _ = sliver_pidfd_send_signal(pidfd, SIGTERM)
                var pfd = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
                _ = poll(&pfd, 1, Int32(config.stopTimeout * 1000))
                close(pidfd)
            }
        }
        do {
            try cgroups.killAll(record.name)
        } catch {
            log.error("kill failed", metadata: ["sliver": "\(record.name)", "error": "\(error)"])
        }
    }

    public func destroy(_ name: String) throws(NodeError) {
        var record = try self.record(name)
        record.state = .destroying
        try persist(record)
        var complete = teardown(name, initProcess: record.initProcess)
        if config.manageAccounts {
            do {
                try accounts.remove(name)
            } catch {
                complete = false
                log.error("account removal failed", metadata: ["sliver": "\(name)", "error": "\(error)"])
            }
        }
        if !complete {
            throw NodeError(.internal, "destroy of \(name) incomplete; it stays in state destroying and is retried at the next start or destroy")
        }
        try store.delete(name)
        records[name] = nil
        rebalanceCPU()
        log.info("sliver destroyed", metadata: ["sliver": "\(name)", "id": "\(record.idRange.slot)"])
    }

    /// Removes every kernel object and file of a sliver: processes (killed through the cgroup,
    /// so none can escape by forking), cgroups, the directory tree. Mounts need no work: they
    /// exist only in the sliver's own mount namespaces, which die with its last process.
    @discardableResult
    func teardown(_ name: String, initProcess: ProcessIdentity? = nil) -> Bool {
        var ok = true
        if let record = records[name] { detachNetwork(record) }
        do {
            try cgroups.killAll(name)
            try cgroups.remove(name)
        } catch {
            ok = false
            log.error("cgroup teardown failed", metadata: ["sliver": "\(name)", "error": "\(error)"])
        }
        // A killed process leaves cgroup.procs when it starts exiting, before it is a zombie;
        // under CPU pressure that gap is visible, so give the init up to 5 s to finish dying,
        // waiting on its pidfd (readable the moment it exits) rather than polling.
        if let initProcess, initProcess.isAlive {
            let pidfd = sliver_pidfd_open_checked(initProcess)
            if pidfd >= 0 {
                var pfd = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
                _ = poll(&pfd, 1, 5000)
                close(pidfd)
            }
        }
        if let initProcess, initProcess.isAlive {
            // Only possible if the init left its cgroups, which it cannot do: report it.
            ok = false
            log.error("init still alive after cgroup kill", metadata: ["sliver": "\(name)", "pid": "\(initProcess.pid)"])
        }
        appliedSettings[name] = nil
        _ = try? FileSystem.removeTree(brokerDirectory(name))
        do {
            let layout = SliverLayout(storage: config.storageDir, name: name)
            if layout.exists { try layout.remove(directories: QuotaDirectories(quota: quota, quotaID: 0)) }
        } catch {
            ok = false
            log.error("storage teardown failed", metadata: ["sliver": "\(name)", "error": "\(error)"])
        }
        return ok
    }

    /// Changes attributes; cgroup-backed ones apply to the running sliver at once. `replacing`:
    /// the attributes become exactly these (the reconciler: a tag PLC dropped returns to its default).
    public func set(_ name: String, attributes: [String: String], replacing: Bool = false) throws(NodeError) -> SliverRecord {
        var record = try self.record(name)
        let before = record.attributes
        if replacing { record.attributes = try SliceAttributes(attributes) } else { try record.attributes.merge(attributes) }
        // The disk quota holds whether or not the sliver runs. (Replacing can also drop disk_max:
        // the limit then returns to the default.)
        let disk = ["disk_max", "disk_inodes_max"]
        if attributes.keys.contains(where: disk.contains) || disk.contains(where: { before[$0] != record.attributes[$0] }) {
            do {
                try quota.setLimit(record.attributes.diskLimit(defaultKiB: config.defaultDiskMaxKiB),
                                   path: SliverLayout(storage: config.storageDir, name: name).directory, quotaID: quotaID(record.idRange))
            } catch {
                throw NodeError(error)
            }
        }
        if record.state == .running {
            var planned = records
            planned[name] = record
            do {
                try applyResources(record, plan: cpuPlan(records: planned), frozen: nil)
            } catch {
                throw Self.nodeError(error)
            }
            // The HTB class changes in place: queue, counters and processes stay.
            try applyLinkClass(record)
        }
        try persist(record)
        rebalanceCPU()
        log.info("sliver attributes changed", metadata: ["sliver": "\(name)", "changed": "\(attributes.keys.sorted())"])
        return record
    }

    /// Starts a command inside a running sliver.
    public func exec(_ name: String, argv: [String], environment: [String: String], cwd: String?,
                     stdio: (Int32, Int32, Int32)) throws(NodeError) -> SpawnedProcess {
        let record = try self.record(name)
        guard record.state == .running, let identity = record.initProcess, identity.isAlive else {
            throw NodeError(.failedPrecondition, "sliver \"\(name)\" is not running", field: "name")
        }
        guard record.attributes.isEnabled else {
            throw NodeError(.failedPrecondition, "sliver \"\(name)\" is disabled (enabled=0)", field: "name")
        }
        guard !argv.isEmpty, argv.allSatisfy({ !$0.contains("\0") }) else {
            throw NodeError.invalid("argv", "\(argv)", "must be a non-empty command")
        }
        var spec = EnterSpec(initProcess: identity, cgroups: cgroups.directories(of: name), seccompProgram: seccompProgram,
                             capabilities: config.capabilitySet, rlimits: record.attributes.resourceLimits, argv: argv)
        spec.environment = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        if let cwd { spec.cwd = cwd }
        do {
            return try launcher.enter(spec, stdio: stdio)
        } catch {
            throw NodeError(error)
        }
    }

    var accounts: HostAccounts { config.hostAccounts }

    // MARK: broker

    /// `<run_dir>/broker/<name>`: bound read-only onto /run/sliverd in the sliver. Holds the
    /// broker socket (made by the control server) and the static client (a hard link).
    public func brokerDirectory(_ name: String) -> String { "\(config.runDir)/broker/\(name)" }

    func prepareBrokerDirectory(_ name: String) throws(NodeError) -> String {
        let dir = brokerDirectory(name)
        do {
            try FileSystem.makeDirectories(dir, mode: 0o755)
            let client = FileSystem.parentDirectory(config.resolvedHelperPath) + "/sliverd-client"
            if FileSystem.exists(client) && !FileSystem.exists(dir + "/sliverd-client") {
                // A hard link of one copy kept in run_dir (same filesystem), not a copy per sliver.
                let shared = config.runDir + "/sliverd-client"
                if !FileSystem.exists(shared) {
                    try FileSystem.writeAtomically(shared, try FileSystem.readFile(client, limit: 64 << 20), mode: 0o755)
                }
                try sysCall("broker", "link \(shared) into \(dir)") { link(shared, dir + "/sliverd-client") }
            }
        } catch {
            throw NodeError(error)
        }
        return dir
    }

    /// A raw socket for a sliver, of a protocol its raw_protocols attribute allows, receiving only
    /// what the sliver owns (its reserved ports for TCP/UDP).
    public func rawSocket(_ name: String, proto: String) throws(NodeError) -> Int32 {
        let record = try self.record(name)
        guard record.attributes.rawProtocols.contains(proto) else {
            throw NodeError(.permissionDenied, "raw \(proto) sockets are not allowed for \(name) (raw_protocols = \(record.attributes.rawProtocols.sorted().joined(separator: ",")))", field: "proto")
        }
        guard record.state == .running, let identity = record.initProcess, identity.isAlive else {
            throw NodeError(.failedPrecondition, "sliver \(name) is not running", field: "name")
        }
        let ports = record.ports.filter { $0.proto == proto }.map(\.port)
        do {
            let fd = try launcher.rawSocket(initProcess: identity, proto: proto, ports: ports)
            log.info("raw socket brokered", metadata: ["sliver": "\(name)", "proto": "\(proto)", "ports": "\(ports)"])
            return fd
        } catch {
            throw NodeError(error)
        }
    }

    // MARK: pool addresses

    /// Gives a sliver a whole public address from network.address_pool (1:1 NAT), or takes it
    /// back (address nil). Exclusive, persisted, live while the sliver runs.
    public func assignPoolAddress(_ name: String, address: String?) throws(NodeError) -> SliverRecord {
        guard config.networkEnabled else { throw NodeError(.failedPrecondition, "this node has no network ([network] uplink is empty)") }
        var record = try self.record(name)
        if let address {
            guard config.addressPool.contains(address) else {
                throw NodeError.invalid("address", address, "not in network.address_pool (\(config.addressPool.joined(separator: ", ")))")
            }
            if let owner = records.values.first(where: { $0.name != name && $0.poolAddress == address }) {
                throw NodeError(.alreadyExists, "address \(address) is assigned to sliver \(owner.name)", field: "address")
            }
        }
        if record.poolAddress == address { return record }
        if let old = record.poolAddress, record.state == .running { try network?.setPoolAddress(old, of: record, assigned: false) }
        record.poolAddress = address
        try persist(record)
        if let address, record.state == .running { try network?.setPoolAddress(address, of: record, assigned: true) }
        log.info("pool address \(address == nil ? "released" : "assigned")", metadata: ["sliver": "\(name)", "address": "\(address ?? "-")"])
        return record
    }

    // MARK: port reservations

    /// Reserves a port on the public address for a sliver: exclusive, persisted, live at once
    /// while the sliver runs, released on destroy. Idempotent for the owner.
    public func reservePort(_ name: String, proto: String, port: Int) throws(NodeError) -> SliverRecord {
        guard config.networkEnabled else { throw NodeError(.failedPrecondition, "this node has no network ([network] uplink is empty)") }
        var record = try self.record(name)
        try PortReservation.validate(proto: proto, port: port, range: config.reservablePorts)
        let wanted = PortReservation(proto: proto, port: port)
        if record.ports.contains(wanted) { return record }
        if let owner = records.values.first(where: { $0.name != name && $0.ports.contains(wanted) }) {
            throw NodeError(.alreadyExists, "\(proto) port \(port) is reserved by sliver \(owner.name)", field: "port")
        }
        guard record.ports.count < config.portsPerSlice else {
            throw NodeError(.resourceExhausted, "sliver \(name) already holds \(record.ports.count) ports (network.ports_per_slice = \(config.portsPerSlice))", field: "port")
        }
        record.portReservations = record.ports + [wanted]
        try persist(record)
        if record.state == .running { try network?.setPort(wanted, of: record, reserved: true) }
        log.info("port reserved", metadata: ["sliver": "\(name)", "proto": "\(proto)", "port": "\(port)"])
        return record
    }

    public func releasePort(_ name: String, proto: String, port: Int) throws(NodeError) -> SliverRecord {
        var record = try self.record(name)
        let reservation = PortReservation(proto: proto, port: port)
        guard record.ports.contains(reservation) else {
            throw NodeError(.notFound, "sliver \(name) holds no \(proto) port \(port)", field: "port")
        }
        record.portReservations = record.ports.filter { $0 != reservation }
        try persist(record)
        if record.state == .running { try network?.setPort(reservation, of: record, reserved: false) }
        log.info("port released", metadata: ["sliver": "\(name)", "proto": "\(proto)", "port": "\(port)"])
        return record
    }

    /// Replaces the slice's SSH keys; live at once (sshd asks `sliverctl keys` at every login,
    /// and authorized_keys is rewritten for setups without that).
    public func setKeys(_ name: String, _ keys: [String]) throws(NodeError) -> SliverRecord {
        var record = try self.record(name)
        for key in keys { try SSHKey.validate(key) }
        record.sshKeys = keys
        try persist(record)
        if config.manageAccounts { try accounts.writeKeys(name, keys) }
        log.info("sliver keys changed", metadata: ["sliver": "\(name)", "keys": "\(keys.count)"])
        return record
    }

    /// A login through vsh: who may enter which sliver, and the process that does.
    /// Root may enter any sliver; any other caller only the sliver named like its account.
    public func login(callerUid: UInt32, name requested: String?, command: String?, argv: [String]? = nil, tty: Bool,
                      environment: [String: String], stdio: (Int32, Int32, Int32)) throws(NodeError) -> SpawnedProcess {
        let name: String
        if callerUid == 0 {
            guard let requested, !requested.isEmpty else { throw NodeError(.invalidArgument, "root must name a sliver: vsh SLICE", field: "name") }
            name = requested
        } else {
            let callerName = Self.accountName(uid: callerUid)
            guard let callerName, records[callerName] != nil else {
                throw NodeError(.permissionDenied, "uid \(callerUid) (\(callerName ?? "no account")) is not a slice account")
            }
            if let requested, !requested.isEmpty, requested != callerName {
                throw NodeError(.permissionDenied, "\(callerName) may not enter sliver \(requested)", field: "name")
            }
            name = callerName
        }
        let record = try self.record(name)
        guard record.attributes.isEnabled else {
            throw NodeError(.failedPrecondition, "sliver \(name) is suspended (enabled=0); logins are refused", field: "name")
        }
        guard record.state == .running, let identity = record.initProcess, identity.isAlive else {
            throw NodeError(.failedPrecondition, "sliver \(name) is \(record.state == .running ? "not running" : record.state.rawValue); logins are refused", field: "name")
        }
        // Root (an admin) enters as the sliver's root; a slice account as the slice's user.
        let asAdmin = callerUid == 0
        var spec = EnterSpec(initProcess: identity, cgroups: cgroups.directories(of: name), seccompProgram: seccompProgram,
                             capabilities: config.capabilitySet, rlimits: record.attributes.resourceLimits,
                             argv: argv ?? command.map { ["/bin/sh", "-c", $0] } ?? (asAdmin ? ["/bin/sh", "-l"] : []))
        if let argv, argv.isEmpty || argv.contains(where: { $0.contains("\0") }) {
            throw NodeError.invalid("argv", "\(argv)", "must be a non-empty command")
        }
        // Only TERM and LANG pass from the caller: nothing else of the caller's environment
        // should steer the process in the sliver (LD_PRELOAD and friends).
        spec.environment = environment.filter { ["TERM", "LANG", "LC_ALL"].contains($0.key) && !$0.value.contains("\0") }
            .sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        spec.user = asAdmin ? nil : name
        spec.login = !asAdmin && command == nil && argv == nil
        spec.pty = tty
        log.info("login", metadata: ["sliver": "\(name)", "uid": "\(callerUid)", "tty": "\(tty)", "command": "\(command != nil)"])
        do {
            return try launcher.enter(spec, stdio: stdio)
        } catch {
            throw NodeError(error)
        }
    }

    static func accountName(uid: UInt32) -> String? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else { return nil }
        return String(cString: name)
    }

    /// Called when a sliver's init has exited while the daemon watched it.
    public func initExited(_ name: String, identity: ProcessIdentity) {
        guard var record = records[name], record.state == .running, record.initProcess == identity else { return }
        try? cgroups.killAll(name)
        detachNetwork(record)
        record.state = .stopped
        record.initProcess = nil
        try? store.save(record)
        records[name] = record
        rebalanceCPU()
        log.warning("sliver init exited; sliver is stopped", metadata: ["sliver": "\(name)", "pid": "\(identity.pid)"])
    }

    // MARK: recovery

    /// Brings the node into a known state at daemon start: adopts slivers whose init still runs,
    /// finishes interrupted creates (rolled back) and destroys, restarts slivers that were
    /// running but whose init is gone (node reboot), and removes cgroups and directories that
    /// belong to no sliver.
    public func recover() throws(NodeError) {
        let (loaded, unreadable) = try store.loadSlivers()
        for (path, reason) in unreadable {
            log.error("unreadable sliver record left in place", metadata: ["path": "\(path)", "reason": "\(reason)"])
            let file = path.split(separator: "/").last.map(String.init) ?? ""
            if file.hasSuffix(".json") { self.unreadable.insert(String(file.dropLast(5))) }
        }
        for record in loaded { records[record.name] = record }
        // The firewall table and the HTB tree first, with the slivers that still run (adopted
        // as they are): a sliver restarted below then finds them there to add its own to.
        try installNetwork(running: loaded.filter { $0.state == .running && $0.initProcess?.isAlive == true })
        for record in loaded.sorted(by: { $0.name < $1.name }) {
            let name = record.name
            switch record.state {
            case .creating:
                log.warning("rolling back interrupted create", metadata: ["sliver": "\(name)"])
                teardown(name)
                records[name] = nil
                try? store.delete(name)
            case .destroying:
                log.warning("finishing interrupted destroy", metadata: ["sliver": "\(name)"])
                try? destroy(name)
            case .running:
                if let identity = record.initProcess, identity.isAlive {
                    log.info("adopted running sliver", metadata: ["sliver": "\(name)", "init_pid": "\(identity.pid)"])
                } else {
                    log.warning("sliver was running but its init is gone; restarting", metadata: ["sliver": "\(name)"])
                    var stopped = record
                    stopped.state = .stopped
                    stopped.initProcess = nil
                    records[name] = stopped
                    _ = try? start(name)
                }
            case .stopped:
                if !cgroups.processes(of: name).isEmpty { try? cgroups.killAll(name) }
            }
        }
        if config.manageAccounts {
            for record in records.values where accounts.account(record.name) == nil {
                log.warning("recreating missing slice account", metadata: ["sliver": "\(record.name)"])
                _ = try? accounts.ensure(record.name)
                try? accounts.writeKeys(record.name, record.keys)
            }
            for member in accounts.members() where records[member] == nil && !self.unreadable.contains(member) && (try? SliceName.validate(member)) != nil {
                log.warning("removing orphan slice account", metadata: ["sliver": "\(member)"])
                try? accounts.remove(member)
            }
        }
        // The firewall table as a whole, with the elements of the slivers that run now (atomic).
        try installNetwork(running: records.values.filter { $0.state == .running })
        // Orphans: kernel objects and directories named like slivers we have no record of.
        for orphan in cgroups.slivers() where records[orphan] == nil && !self.unreadable.contains(orphan) {
            log.warning("removing orphan cgroup", metadata: ["sliver": "\(orphan)"])
            teardown(orphan)
        }
        for entry in (try? FileSystem.listDirectory(config.storageDir)) ?? [] where records[entry] == nil && !self.unreadable.contains(entry) {
            guard (try? SliceName.validate(entry)) != nil else { continue }
            log.warning("removing orphan sliver directory", metadata: ["sliver": "\(entry)"])
            teardown(entry)
        }
        // Nothing is known to be applied after a restart: write the CPU plan to every sliver.
        rebalanceCPU()
    }

    /// Writes a record (atomically) and then makes it the in-memory truth: never the other way
    /// round, so memory never holds a state the disk does not.
    func persist(_ record: SliverRecord) throws(NodeError) {
        try store.save(record)
        records[record.name] = record
    }

    static func nodeError(_ error: any Error) -> NodeError {
        switch error {
        case let e as NodeError: return e
        case let e as IsolationError: return NodeError(e)
        case let e as ResourceError: return NodeError(e)
        case let e as SystemError: return NodeError(e)
        default: return NodeError(.internal, "\(error)")
        }
    }
}

/// pidfd of a process only if it is still the same process (pid + start time).
func sliver_pidfd_open_checked(_ identity: ProcessIdentity) -> Int32 {
    let fd = sliver_pidfd_open(identity.pid)
    guard fd >= 0 else { return -1 }
    // Checked after opening: the pidfd pins the process, so if the identity still matches now,
    // the fd refers to the right one.
    if !identity.isAlive { close(fd); return -1 }
    return fd
}

extension NodeConfig {
    /// `helper` from the config, or `sliver-helper` next to the running executable.
    public var resolvedHelperPath: String {
        if !helperPath.isEmpty { return helperPath }
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return "/usr/libexec/sliverd/sliver-helper" }
        let exe = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return FileSystem.parentDirectory(exe) + "/sliver-helper"
    }
}
