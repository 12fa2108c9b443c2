import Foundation
import SliverResources

/// The table of `sliverctl top`: one row per sliver, sorted by CPU use over the last interval.
public enum UsageTable {
    public struct Row: Equatable, Sendable {
        public var name: String
        public var state: String
        /// Percent of one CPU over the interval (200 = two CPUs busy); nil without two samples.
        public var cpuPercent: Double?
        public var usage: ResourceUsage?
    }

    /// Rows from two samples `elapsed` seconds apart (`previous` may be empty: no CPU %).
    public static func rows(previous: [SliverView], current: [SliverView], elapsed: Double) -> [Row] {
        let before = Dictionary(previous.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let rows = current.map { sliver -> Row in
            var percent: Double?
            if elapsed > 0, let now = sliver.usage?.cpuNanoseconds, let then = before[sliver.name]?.usage?.cpuNanoseconds,
               before[sliver.name]?.initPid == sliver.initPid {
                // cpuacct.usage / cpu.stat usage_usec only grow while the cgroup lives.
                percent = now >= then ? Double(now - then) / (elapsed * 1e9) * 100 : nil
            }
            return Row(name: sliver.name, state: sliver.state, cpuPercent: percent, usage: sliver.usage)
        }
        return rows.sorted { ($0.cpuPercent ?? -1, $1.name) > ($1.cpuPercent ?? -1, $0.name) }
    }

    public static let header = ["NAME", "STATE", "CPU%", "MEM", "PEAK", "OOM", "PIDS", "DISK"]

    /// Fixed-width text, columns separated by two spaces; numbers right-aligned.
    public static func render(_ rows: [Row]) -> String {
        let cells = [header] + rows.map { row -> [String] in
            let u = row.usage
            let disk: String
            switch (u?.diskBytes, u?.diskLimitBytes) {
            case (let used?, let limit?): disk = "\(bytes(used))/\(bytes(limit))"
            case (let used?, nil): disk = bytes(used)
            default: disk = "-"
            }
            return [row.name, row.state, row.cpuPercent.map { String(format: "%.1f", $0) } ?? "-",
                    u?.memoryBytes.map(bytes) ?? "-", u?.memoryPeakBytes.map(bytes) ?? "-",
                    u?.oomKills.map(String.init) ?? "-", u?.pids.map(String.init) ?? "-", disk]
        }
        let widths = header.indices.map { column in cells.map { $0[column].count }.max() ?? 0 }
        return cells.map { line in
            line.enumerated().map { column, text in
                let pad = String(repeating: " ", count: widths[column] - text.count)
                return column < 2 ? text + pad : pad + text
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }.joined(separator: "\n") + "\n"
    }

    /// 1536 -> "1.5K", binary units, one decimal below 10.
    public static func bytes(_ value: UInt64) -> String {
        let units = ["B", "K", "M", "G", "T"]
        var amount = Double(value)
        var unit = 0
        while amount >= 1024 && unit < units.count - 1 {
            amount /= 1024
            unit += 1
        }
        if unit == 0 { return "\(value)B" }
        return String(format: amount < 10 ? "%.1f" : "%.0f", amount) + units[unit]
    }
}
