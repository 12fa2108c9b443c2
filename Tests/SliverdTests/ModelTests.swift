import Testing
@testable import NodeManager
@testable import SliverIsolation
@testable import SliverResources

@Suite struct SliceNameTests {
    @Test(arguments: ["princeton_sl1", "pl_netflow", "a_b", "site.x_Slice.2_a", "abc_" + String(repeating: "x", count: 28)])
    func accepts(_ name: String) throws {
        try SliceName.validate(name)
    }

    @Test(arguments: ["", "noslice", "_x", "Site_x", "a_", "a_b/c", "../x_y", "a_b c", "a_b\u{0}", "a-b_c",
                      ".a_b", "abc_" + String(repeating: "x", count: 29), "a_é"])
    func refuses(_ name: String) {
        #expect(throws: NodeError.self) { try SliceName.validate(name) }
    }

    @Test func errorNamesFieldAndValue() {
        do {
            try SliceName.validate("bad/name")
            Issue.record("accepted")
        } catch {
            #expect(error.field == "name")
            #expect(error.message.contains("\"bad/name\""))
        }
    }
}

@Suite struct SliceAttributesTests {
    @Test func defaultsAndConversions() throws {
        let attrs = try SliceAttributes(["cpu_share": "3", "memlock_hard": "65536", "pids_max": "200", "nofile_soft": "100", "nofile_hard": "50"])
        let settings = attrs.resourceSettings(defaultPidsMax: 1024)
        #expect(settings.cpuShare == 3)
        #expect(settings.memoryMaxBytes == 64 << 20)
        #expect(settings.pidsMax == 200)
        #expect(!settings.frozen)
        // soft above hard is clamped to hard
        #expect(attrs.resourceLimits == [ResourceLimit(resource: "nofile", soft: 50, hard: 50)])
        #expect(SliceAttributes().resourceSettings(defaultPidsMax: 77).pidsMax == 77)
    }

    @Test func enabledZeroFreezes() throws {
        #expect(try SliceAttributes(["enabled": "0"]).resourceSettings(defaultPidsMax: nil).frozen)
    }

    @Test(arguments: [("cpu_share", "-1"), ("cpu_share", "abc"), ("cpu_pct", "101"), ("enabled", "2"),
                      ("cpu_cores", "x"), ("cpu_cores", "2c"), ("nofile_hard", "-5"), ("no_such_tag", "1"),
                      ("disk_max", "1.5"), ("net_max_rate", "1")])
    func refusesInvalid(_ name: String, _ value: String) {
        do {
            _ = try SliceAttributes([name: value])
            Issue.record("accepted \(name)=\(value)")
        } catch {
            #expect(error.code == .invalidArgument)
            #expect(error.message.contains(name))
        }
    }

    @Test func mergeIsAllOrNothing() throws {
        var attrs = try SliceAttributes(["cpu_share": "2"])
        #expect(throws: NodeError.self) { try attrs.merge(["cpu_share": "5", "bogus": "1"]) }
        #expect(attrs["cpu_share"] == "2")
        try attrs.merge(["cpu_cores": "1b"])
        #expect(attrs["cpu_cores"] == "1b")
    }
}

@Suite struct IDRangeTests {
    @Test func slotsNeverOverlap() throws {
        let allocator = IDRangeAllocator()
        let a = try allocator.allocate(excluding: [])
        let b = try allocator.allocate(excluding: [a.slot])
        #expect(a.base == 1_048_576 && a.count == 65536)
        #expect(b.base == a.base + 65536)
        #expect(!a.overlaps(b))
        // a freed slot is reused only once it is no longer excluded
        #expect(try allocator.allocate(excluding: [b.slot]).slot == a.slot)
    }

    @Test func exhaustion() {
        let allocator = IDRangeAllocator(first: 1_048_576, slots: 2)
        #expect(throws: IsolationError.self) { try allocator.allocate(excluding: [0, 1]) }
    }

    @Test func validity() {
        #expect(IDRangeAllocator().isValid)
        #expect(!IDRangeAllocator(first: 2_000_000_000, slots: 4096).isValid)
    }
}

@Suite struct CapabilityTests {
    @Test func defaultSetHasNothingForbidden() {
        #expect(CapabilitySet.sliverDefault.mask & CapabilitySet.forbidden.mask == 0)
        #expect(CapabilitySet.sliverDefault.names.contains("CAP_CHOWN"))
        #expect(!CapabilitySet.sliverDefault.names.contains("CAP_NET_RAW"))
    }

    @Test func parsesNames() throws {
        #expect(try CapabilitySet(names: ["chown", "CAP_KILL"]).mask == (1 << 0) | (1 << 5))
        #expect(throws: IsolationError.self) { try CapabilitySet(names: ["CAP_FLY"]) }
    }
}

@Suite struct SeccompTests {
    @Test func compilesOnce() throws {
        let program = try SeccompProfile.default.compile()
        #expect(program.count > 0 && program.count % 8 == 0)  // struct sock_filter is 8 bytes
        #expect(program.count / 8 < 4096)                     // BPF_MAXINSNS
    }

    @Test func allowlistOmitsDangerousCalls() {
        let allowed = Set(SeccompProfile.default.allowed)
        for name in ["keyctl", "add_key", "request_key", "bpf", "unshare", "setns", "mount", "umount2", "fsopen",
                     "fsmount", "move_mount", "open_tree", "mount_setattr", "pivot_root", "kexec_load", "init_module",
                     "finit_module", "open_by_handle_at", "perf_event_open", "userfaultfd", "io_uring_setup",
                     "swapon", "iopl", "ioperm", "clone3", "reboot"] {
            #expect(!allowed.contains(name), "\(name) must not be allowed")
        }
    }
}
