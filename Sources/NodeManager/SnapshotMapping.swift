import Foundation
import PLCProtocol

/// Turns a GetSlivers snapshot into the node's desired state. Pure: no I/O, so `sliverctl plan`
/// and the benchmark run exactly what the reconciler runs.
///
/// Per entry:
/// - `name` must be a valid sliver name (SliceName); an entry that appears twice is held.
/// - `expires` at or before now: not wanted (destroyed if it exists).
/// - `instantiation`: `plc-instantiated` is created; `delegated` and `nm-controller` are never
///   created here (see DesiredSliver.mayCreate); `not-instantiated` is not wanted; anything
///   else is held.
/// - `attributes`: tags of SliceAttributes' vocabulary are validated with PLCAPI's units
///   (cpu_share 1-1000, memlock_* KiB, net_* kbit/s and KiB, disk_max KiB, rlimits); one invalid
///   value holds the whole sliver (nothing of it changes; the rest of the snapshot applies).
///   An absent tag means PLCAPI's default (SliceAttributes applies it), so removing a tag at PLC
///   resets the sliver to the default. Unknown tags are kept in `otherAttributes`.
/// - image: the `vref` tag, else `[provisioning] default_image`, else GetSliceFamily.
/// - `keys`: key_type "ssh" only; malformed keys (or keys with options) are dropped with a note.
/// - initscript: the `initscript_code` tag (inline), else the global initscript the
///   `initscript` tag names (from the snapshot's `initscripts`).
public struct SnapshotMapping: Sendable {
    public var defaultImage: String

    public init(defaultImage: String = "") { self.defaultImage = defaultImage }

    public func map(_ snapshot: SliversSnapshot, now: Int) -> DesiredState {
        var state = DesiredState(timestamp: snapshot.timestamp)
        state.accounts = snapshot.accounts
        for entry in snapshot.rejected {
            if let name = entry.name {
                state.held[name] = "entry \(entry.index) rejected: \(entry.reason)"
            } else {
                state.destroyBlocked = "entry \(entry.index) of the snapshot was rejected and has no readable name (\(entry.reason))"
            }
        }
        var seen: [String: Int] = [:]
        for sliver in snapshot.slivers { seen[sliver.name, default: 0] += 1 }
        let scripts = Dictionary(snapshot.initscripts.filter(\.enabled).map { ($0.name, $0.script) }, uniquingKeysWith: { first, _ in first })
        for sliver in snapshot.slivers {
            let name = sliver.name
            do {
                try SliceName.validate(name)
            } catch {
                state.held[name] = error.message
                continue
            }
            guard seen[name] == 1 else {
                state.held[name] = "appears \(seen[name] ?? 0) times in the snapshot"
                continue
            }
            if sliver.expires <= now {
                state.unwanted[name] = "expired at \(Self.time(sliver.expires))"
                continue
            }
            let mayCreate: Bool
            switch sliver.instantiation {
            case "plc-instantiated": mayCreate = true
            case "delegated", "nm-controller": mayCreate = false
            case "not-instantiated":
                state.unwanted[name] = "instantiation not-instantiated"
                continue
            default:
                state.held[name] = "unknown instantiation \"\(sliver.instantiation)\""
                continue
            }
            switch desired(sliver, scripts: scripts, mayCreate: mayCreate) {
            case .success(let desired):
                state.slivers[name] = desired
                if state.nextExpiry.map({ sliver.expires < $0 }) ?? true { state.nextExpiry = sliver.expires }
            case .failure(let error):
                state.held[name] = error.message
            }
        }
        return state
    }

    private func desired(_ sliver: SliversSnapshot.Sliver, scripts: [String: String], mayCreate: Bool) -> Result<DesiredSliver, NodeError> {
        var known: [String: String] = [:]
        var other: [String: [String]] = [:]
        for attribute in sliver.attributes {
            if SliceAttributes.vocabulary[attribute.tagname] != nil {
                known[attribute.tagname] = attribute.value
            } else {
                other[attribute.tagname, default: []].append(attribute.value)
            }
        }
        for (tag, value) in known.sorted(by: { $0.key < $1.key }) {
            do { try SliceAttributes.validate(tag, value) } catch { return .failure(error) }
        }
        var notes: [String] = []
        guard let image = known["vref"] ?? (defaultImage.isEmpty ? sliver.family : defaultImage), !image.isEmpty else {
            return .failure(NodeError.invalid("vref", "", "no image: the slice has no vref, [provisioning] default_image is empty and PLC sent no GetSliceFamily"))
        }
        do { try ImageName.validate(image) } catch { return .failure(error) }
        var keys: [String] = []
        for key in sliver.keys {
            let text = key.key.trimmingCharacters(in: .whitespacesAndNewlines)
            guard key.keyType == "ssh" else {
                notes.append("key of type \(key.keyType) ignored")
                continue
            }
            do {
                try SSHKey.validate(text)
                if !keys.contains(text) { keys.append(text) }
            } catch {
                notes.append("\(error.message): dropped")
            }
        }
        var initscript: DesiredSliver.Initscript?
        if let code = known["initscript_code"], !code.isEmpty {
            initscript = .init(name: "initscript_code", code: code, hash: Self.hash(code))
        } else if let named = known["initscript"], !named.isEmpty {
            if let code = scripts[named], !code.isEmpty {
                initscript = .init(name: named, code: code, hash: Self.hash(code))
            } else {
                notes.append("initscript \"\(named)\" is not among the snapshot's enabled initscripts: none runs")
            }
        }
        return .success(DesiredSliver(name: sliver.name, sliceID: sliver.sliceID, instantiation: sliver.instantiation,
                                      expires: sliver.expires, image: image, attributes: known, keys: keys,
                                      initscript: initscript, otherAttributes: other, notes: notes, mayCreate: mayCreate))
    }

    static func hash(_ code: String) -> String {
        SHA1.hash(Array(code.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined()
    }

    static func time(_ seconds: Int) -> String {
        let formatter = ISO8601DateFormatter()
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }
}
