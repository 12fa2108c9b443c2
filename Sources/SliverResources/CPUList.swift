/// The kernel's CPU list format (cpuset.cpus, /sys/devices/system/cpu/online): "0-3,8,10-11".
public enum CPUList {
    /// Parses a list; nil when the text is not one (an empty text is the empty list).
    public static func parse(_ text: String) -> [Int]? {
        var cpus = Set<Int>()
        for item in text.split(whereSeparator: { $0 == "," || $0 == "\n" || $0 == " " }) {
            let bounds = item.split(separator: "-", omittingEmptySubsequences: false)
            guard let low = bounds.first.flatMap({ Int($0) }), low >= 0 else { return nil }
            switch bounds.count {
            case 1:
                cpus.insert(low)
            case 2:
                guard let high = Int(bounds[1]), high >= low, high - low < 65536 else { return nil }
                cpus.formUnion(low...high)
            default:
                return nil
            }
        }
        return cpus.sorted()
    }

    /// Formats CPUs as ranges, lowest first: [0, 1, 2, 5] -> "0-2,5".
    public static func format(_ cpus: [Int]) -> String {
        var parts: [String] = []
        var run: (Int, Int)?
        for cpu in Set(cpus).sorted() {
            if let (low, high) = run, cpu == high + 1 { run = (low, cpu); continue }
            if let (low, high) = run { parts.append(low == high ? "\(low)" : "\(low)-\(high)") }
            run = (cpu, cpu)
        }
        if let (low, high) = run { parts.append(low == high ? "\(low)" : "\(low)-\(high)") }
        return parts.joined(separator: ",")
    }
}
