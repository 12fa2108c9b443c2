import Foundation
import SliverSystem

/// The daemon's persistent state: one JSON file per sliver (`<state>/slivers/<name>.json`) and one
/// for the image registry (`<state>/images.json`). Each write replaces a whole file atomically,
/// so a crash at any moment leaves every file either old or new, never torn; per-sliver files
/// keep a change to one sliver from rewriting the records of a thousand others.
public struct StateStore: Sendable {
    public let directory: String

    public init(directory: String) throws(NodeError) {
        self.directory = directory
        do {
            try FileSystem.makeDirectories(directory, mode: 0o700)
            try FileSystem.makeDirectories(slivers, mode: 0o700)
        } catch {
            throw NodeError(error)
        }
    }

    var slivers: String { directory + "/slivers" }
    var imagesFile: String { directory + "/images.json" }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return encoder
    }()

    public func save(_ record: SliverRecord) throws(NodeError) {
        try write(record, to: "\(slivers)/\(record.name).json")
    }

    public func delete(_ name: String) throws(NodeError) {
        let path = "\(slivers)/\(name).json"
        if unlink(path) != 0 && errno != ENOENT {
            throw NodeError(SystemError(stage: "state.delete", attempted: "unlink \(path)", errno: errno))
        }
    }

    /// Loads every sliver record. A record that cannot be read is reported, not dropped
    /// silently: the caller logs it and leaves the file for an operator.
    public func loadSlivers() throws(NodeError) -> (records: [SliverRecord], unreadable: [String: String]) {
        var records: [SliverRecord] = []
        var unreadable: [String: String] = [:]
        let names: [String]
        do {
            names = try FileSystem.listDirectory(slivers)
        } catch {
            throw NodeError(error)
        }
        for file in names where file.hasSuffix(".json") {
            let path = "\(slivers)/\(file)"
            do {
                let record = try JSONDecoder().decode(SliverRecord.self, from: Data(try FileSystem.readFile(path)))
                guard record.version <= SliverRecord.currentVersion else {
                    unreadable[path] = "record version \(record.version) is newer than this sliverd (\(SliverRecord.currentVersion))"
                    continue
                }
                records.append(record)
            } catch {
                unreadable[path] = "\(error)"
            }
        }
        // Leftover temporary files of an interrupted write.
        for file in names where file.contains(".json.tmp.") { unlink("\(slivers)/\(file)") }
        return (records, unreadable)
    }

    public func saveImages(_ images: [ImageRecord]) throws(NodeError) {
        try write(images.sorted { $0.name < $1.name }, to: imagesFile)
    }

    public func loadImages() throws(NodeError) -> [ImageRecord] {
        guard FileSystem.exists(imagesFile) else { return [] }
        do {
            return try JSONDecoder().decode([ImageRecord].self, from: Data(try FileSystem.readFile(imagesFile)))
        } catch {
            throw NodeError(.internal, "cannot read \(imagesFile): \(error)")
        }
    }

    private func write<T: Encodable>(_ value: T, to path: String) throws(NodeError) {
        do {
            let data = try Self.encoder.encode(value)
            try FileSystem.writeAtomically(path, Array(data), mode: 0o600)
        } catch let error as SystemError {
            throw NodeError(error)
        } catch {
            throw NodeError(.internal, "encode \(path): \(error)")
        }
    }
}
