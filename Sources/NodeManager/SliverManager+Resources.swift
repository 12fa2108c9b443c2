import SliverIsolation
import SliverResources

/// The resource side of the manager: per-sliver settings, the node-wide CPU plan (cores and
/// guarantees), disk quotas and usage.
extension SliverManager {
    /// The sliver's stable number for its disk-quota backend (its project id).
    func quotaID(_ range: IDRange) -> UInt32 { config.projectIDBase + UInt32(range.slot) }

    /// What the sliver's cgroups get: its own attributes plus its part of the CPU plan.
    func resourceSettings(_ record: SliverRecord, plan: CPUPlan) -> ResourceSettings {
        var settings = record.attributes.resourceSettings(defaultPidsMax: config.defaultPidsMax)
        let assignment = plan.assignment(record.name)
        settings.cpus = assignment.cpus
        settings.cpuGuaranteeWeight = assignment.guaranteeWeight
        return settings
    }

    /// Writes every cgroup limit of one sliver; `frozen` overrides enabled=0 (create and start
    /// boot the sliver thawed and freeze it afterwards).
    func applyResources(_ record: SliverRecord, plan: CPUPlan, frozen: Bool?) throws(ResourceError) {
        var settings = resourceSettings(record, plan: plan)
        if let frozen { settings.frozen = frozen }
        try cgroups.apply(settings, to: record.name)
        appliedSettings[record.name] = settings
    }

    /// The CPU plan over the running slivers of `records` (default: the current ones), plus
    /// `including`, a sliver about to start. Oldest first: it keeps its cores when a newer one
    /// asks for the same.
    func cpuPlan(records: [String: SliverRecord]? = nil, including: String? = nil) -> CPUPlan {
        let active = (records ?? self.records).values
            .filter { $0.state == .running || $0.name == including }
            .sorted { ($0.createdAt, $0.name) < ($1.createdAt, $1.name) }
        let demands = active.map { record in
            let cores = record.attributes.cpuCores
            return CPUDemand(name: record.name, share: record.attributes.resourceSettings(defaultPidsMax: nil).cpuShare,
                             guaranteePercent: record.attributes.cpuGuaranteePercent,
                             cores: cores.count, withPool: cores.withPool)
        }
        return CPUPlan.make(cpus: cpuOrder, demands: demands)
    }

    /// Re-plans the CPU after a sliver came, went or changed, and rewrites the CPU part of every
    /// running sliver whose share of it changed (cores moved, pool grew or shrank, guarantee
    /// weights shifted). The slivers' processes keep running; the kernel migrates them.
    func rebalanceCPU() {
        let plan = cpuPlan()
        for record in records.values.sorted(by: { $0.name < $1.name }) where record.state == .running {
            let settings = resourceSettings(record, plan: plan)
            if let applied = appliedSettings[record.name], applied.hasSameCPU(as: settings) { continue }
            do {
                try cgroups.applyCPU(settings, to: record.name)
                var updated = appliedSettings[record.name] ?? settings
                updated.cpus = settings.cpus
                updated.cpuGuaranteeWeight = settings.cpuGuaranteeWeight
                updated.cpuShare = settings.cpuShare
                updated.cpuCapPercent = settings.cpuCapPercent
                appliedSettings[record.name] = updated
            } catch {
                log.error("CPU re-plan failed", metadata: ["sliver": "\(record.name)", "error": "\(error)"])
            }
            if let missing = plan.shortfalls[record.name] {
                log.warning("not enough free cores for cpu_cores", metadata: [
                    "sliver": "\(record.name)", "missing": "\(missing)",
                    "cpus": "\(settings.cpus.map(CPUList.format) ?? "-")"])
            }
        }
        for name in appliedSettings.keys where records[name]?.state != .running { appliedSettings[name] = nil }
    }

    /// CPU, memory, pids and disk use of a running sliver.
    public func usage(_ name: String) -> ResourceUsage {
        var usage = cgroups.usage(of: name)
        if let record = records[name] { addDiskUsage(&usage, record) }
        return usage
    }

    /// What `show` and `list` report: everything for a running sliver, the disk for a stopped one.
    public func reportedUsage(_ record: SliverRecord) -> ResourceUsage? {
        switch record.state {
        case .running:
            return usage(record.name)
        case .stopped:
            var usage = ResourceUsage()
            addDiskUsage(&usage, record)
            return usage.diskBytes == nil ? nil : usage
        case .creating, .destroying:
            return nil
        }
    }

    private func addDiskUsage(_ usage: inout ResourceUsage, _ record: SliverRecord) {
        let path = SliverLayout(storage: config.storageDir, name: record.name).directory
        guard let disk = quota.usage(path: path, quotaID: quotaID(record.idRange)) else { return }
        usage.diskBytes = disk.bytes
        usage.diskLimitBytes = disk.limitBytes
        usage.diskInodes = disk.inodes
    }
}

extension ResourceSettings {
    /// Whether the CPU files (weight, cap, cpuset) would be written with the same values.
    func hasSameCPU(as other: ResourceSettings) -> Bool {
        cpuSharesV1 == other.cpuSharesV1 && cpuWeightV2 == other.cpuWeightV2
            && cfsQuotaMicroseconds == other.cfsQuotaMicroseconds && cpus == other.cpus
    }
}

/// The disk-quota backend as the layout's maker of `<storage_dir>/<name>`.
struct QuotaDirectories: SliverDirectoryMaker {
    let quota: any DiskQuota
    /// The sliver's quota id (unused when removing: backends read it from the directory).
    let quotaID: UInt32

    func makeDirectory(_ path: String) throws(IsolationError) {
        do {
            try quota.createDirectory(path, quotaID: quotaID)
        } catch {
            throw IsolationError(.kernel, stage: error.stage, error.message)
        }
    }

    func removeDirectory(_ path: String) throws(IsolationError) {
        do {
            try quota.removeDirectory(path, quotaID: quotaID)
        } catch {
            throw IsolationError(.kernel, stage: error.stage, error.message)
        }
    }
}
