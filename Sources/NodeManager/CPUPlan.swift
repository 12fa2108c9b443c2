import SliverResources
import SliverSystem

/// What one sliver asks of the CPU (from its cpu_share, cpu_pct and cpu_cores attributes).
struct CPUDemand: Sendable, Equatable {
    var name: String
    var share: Int
    /// cpu_pct: percent of the shared pool's CPU time guaranteed when it competes.
    var guaranteePercent: Int = 0
    /// cpu_cores N: whole cores for this sliver alone.
    var cores: Int = 0
    /// cpu_cores "Nb" (or no cores): also runs on the shared pool.
    var withPool: Bool = true
}

/// The CPU part of one sliver's cgroup settings that depends on the other slivers.
struct CPUAssignment: Sendable, Equatable {
    /// cpuset.cpus: its exclusive cores, plus the pool if it asked for "b" or has no cores.
    /// nil when the node has no cpuset controller.
    var cpus: [Int]?
    /// CPUs reserved for this sliver alone.
    var exclusive: [Int] = []
    /// Extra weight (cpu.shares units) that realises its cpu_pct guarantee.
    var guaranteeWeight: Int = 0
}

/// The node-wide CPU decision, recomputed whenever a sliver starts, stops, is destroyed or
/// changes a CPU attribute:
///
/// - Whole cores (cpu_cores): handed out to running slivers in a stable order (oldest first),
///   each core to one sliver only, in `cpus` order (siblings of a physical core are adjacent
///   there), while at least `minimumPool` CPUs always stay in the shared pool. A sliver that
///   asks for more than is left gets what is left (possibly nothing: then it runs on the pool).
///   The pool is every CPU no sliver holds exclusively.
/// - Guarantees (cpu_pct): cpu.shares is proportional, so a guarantee is a weight that is
///   P % of the total weight of the slivers competing on the pool. With B the sum of their base
///   weights (1024 per share) and G the sum of their guarantees, sliver g gets an extra
///   P_g * B / (100 - G): when everyone is busy it receives its P_g % plus its share of the
///   rest; when it is alone it may use everything (work conserving). Guarantees that add up to
///   more than `maximumGuarantee` % are scaled down proportionally.
struct CPUPlan: Sendable, Equatable {
    var assignments: [String: CPUAssignment] = [:]
    /// CPUs every sliver without exclusive cores runs on.
    var pool: [Int]? = nil
    /// Slivers that asked for more cores than were left, and how many they did not get.
    var shortfalls: [String: Int] = [:]

    static let maximumGuarantee = 90

    /// `cpus` in the order cores are handed out (see CPUTopology.allocationOrder); empty when
    /// the node has no cpuset controller. `demands` in priority order.
    static func make(cpus: [Int], demands: [CPUDemand], minimumPool: Int = 1) -> CPUPlan {
        var plan = CPUPlan()
        var free = cpus
        var exclusive: [String: [Int]] = [:]
        for demand in demands where demand.cores > 0 {
            let available = max(0, free.count - minimumPool)
            let granted = min(demand.cores, available)
            if granted < demand.cores { plan.shortfalls[demand.name] = demand.cores - granted }
            if granted > 0 {
                exclusive[demand.name] = Array(free.prefix(granted)).sorted()
                free.removeFirst(granted)
            }
        }
        let pool = free.sorted()
        plan.pool = cpus.isEmpty ? nil : pool

        // Slivers that compete on the pool: those without exclusive cores and the "b" ones.
        let competitors = demands.filter { exclusive[$0.name] == nil || $0.withPool }
        let base = competitors.reduce(0) { $0 + 1024 * $1.share }
        let asked = competitors.reduce(0) { $0 + max(0, $1.guaranteePercent) }
        let scale = asked > maximumGuarantee ? Double(maximumGuarantee) / Double(asked) : 1
        let total = Double(asked) * scale
        for demand in demands {
            var assignment = CPUAssignment()
            let own = exclusive[demand.name] ?? []
            assignment.exclusive = own
            if !cpus.isEmpty {
                assignment.cpus = own.isEmpty ? pool : (demand.withPool ? (own + pool).sorted() : own)
            }
            let competes = own.isEmpty || demand.withPool
            if competes, demand.guaranteePercent > 0, total < 100 {
                let percent = Double(demand.guaranteePercent) * scale
                assignment.guaranteeWeight = Int((percent * Double(base) / (100 - total)).rounded())
            }
            plan.assignments[demand.name] = assignment
        }
        return plan
    }

    /// A sliver that is not part of the plan (not running): the pool, no guarantee.
    func assignment(_ name: String) -> CPUAssignment {
        assignments[name] ?? CPUAssignment(cpus: pool)
    }
}

/// The CPU topology, for handing out whole cores.
enum CPUTopology {
    /// `cpus` ordered for allocation: the logical CPUs of one physical core (SMT siblings)
    /// stay adjacent, and cores with the highest numbers come first, so that the pool keeps
    /// CPU 0, where the host's housekeeping usually runs.
    static func allocationOrder(_ cpus: [Int], coreOf: (Int) -> String? = sysfsCore) -> [Int] {
        var groups: [String: [Int]] = [:]
        for cpu in cpus { groups[coreOf(cpu) ?? "cpu\(cpu)", default: []].append(cpu) }
        return groups.values.map { $0.sorted() }.sorted { ($0.max() ?? 0) > ($1.max() ?? 0) }.flatMap { $0 }
    }

    /// "package:core" from /sys/devices/system/cpu/cpuN/topology.
    static func sysfsCore(_ cpu: Int) -> String? {
        let dir = "/sys/devices/system/cpu/cpu\(cpu)/topology/"
        guard let package = try? FileSystem.readString(dir + "physical_package_id"),
              let core = try? FileSystem.readString(dir + "core_id") else { return nil }
        return package.split(separator: "\n").joined() + ":" + core.split(separator: "\n").joined()
    }
}
