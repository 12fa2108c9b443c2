// swift-tools-version: 6.0
// Sliverd: a per-node virtualization agent for network testbeds.
//
// Layers (arrows point down only):
//   executables (sliverd, sliverctl, vsh, plcd; sliver-helper in C, see bootscripts/sliverd-build)
//     -> NodeManager (model, state, config, control API, provisioning: sources, reconciler)
//       -> SliverIsolation, SliverResources, SliverNetwork, PLCProtocol (XML-RPC, PLCAPI auth, GetSlivers)
//         -> SliverSystem (errno-carrying syscalls, files, spawning)
//           -> C: CSliverShim, CSeccomp, CCap, CMnl, CNftables
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

let package = Package(
    name: "Sliverd",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "sliverd", targets: ["sliverd"]),
        .executable(name: "sliverctl", targets: ["sliverctl"]),
        .executable(name: "vsh", targets: ["vsh"]),
        .executable(name: "plcd", targets: ["plcd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // C system libraries (Debian: libseccomp-dev, libcap-dev, libmnl-dev).
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp", providers: [.apt(["libseccomp-dev"])]),
        .systemLibrary(name: "CCap", pkgConfig: "libcap", providers: [.apt(["libcap-dev"])]),
        .systemLibrary(name: "CMnl", pkgConfig: "libmnl", providers: [.apt(["libmnl-dev"])]),
        .systemLibrary(name: "CNftables", pkgConfig: "libnftables", providers: [.apt(["libnftables-dev"])]),
        // One-line wrappers for what Swift cannot call (variadic prctl/syscall, macros).
        .target(name: "CSliverShim"),
        // Sources/sliver-helper, the single-threaded helper between clone and exec, is plain C and
        // is built by bootscripts/sliverd-build with cc as a static executable, not by SwiftPM:
        // swiftc links every executable against the Swift runtime, whose loading cost 4-5 ms on
        // each sliver start and each login (0.9 ms for the whole static C program).

        .target(name: "SliverSystem", dependencies: ["CSliverShim"], swiftSettings: strict),
        .target(
            name: "SliverIsolation",
            dependencies: ["SliverSystem", "CSeccomp", "CCap", "CSliverShim"],
            swiftSettings: strict),
        .target(
            name: "SliverResources",
            dependencies: ["SliverSystem", "CSliverShim", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        .target(name: "SliverNetwork", dependencies: ["SliverSystem", "CMnl", "CNftables", "CSliverShim"], swiftSettings: strict),
        // PLCAPI as a node speaks it: XML-RPC codec (FoundationXML), HMAC/session auth, the
        // http(loopback)/https(curl) client, the GetSlivers snapshot. Never depends on NodeManager.
        .target(name: "PLCProtocol", dependencies: ["SliverSystem", "CSliverShim", "JSONText"], swiftSettings: strict),
        // JSON string literals as bytes, standard library only: shared by PLCProtocol and vsh.
        .target(name: "JSONText", swiftSettings: strict),
        .target(
            name: "NodeManager",
            dependencies: [
                "SliverSystem", "SliverIsolation", "SliverResources", "SliverNetwork", "PLCProtocol", "CSliverShim",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),

        .executableTarget(
            name: "sliverd",
            dependencies: ["NodeManager", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        // Our own PLC: a single-threaded XML-RPC server for tests and standalone testbeds.
        .executableTarget(name: "plcd", dependencies: ["PLCProtocol", "SliverSystem", "CSliverShim"], swiftSettings: strict),
        .executableTarget(
            name: "sliverctl",
            dependencies: ["NodeManager", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict),

        // The login shell of slice accounts: no Foundation, nothing but the socket and the shim.
        // A static executable: loading libswiftCore (or, with -static-stdlib, libstdc++, libm and
        // their relocations) cost as much as the whole namespace entry. Linked with the toolchain's
        // lld, which does not repeat glibc's generic "dlopen in a static program" link warning
        // (the runtime's optional dlopen of a prespecialization library simply fails there).
        .executableTarget(name: "vsh", dependencies: ["CSliverShim", "JSONText"], swiftSettings: strict,
                          linkerSettings: [.unsafeFlags(["-static-executable", "-use-ld=lld"])]),

        .testTarget(
            name: "SliverdTests",
            dependencies: ["NodeManager", "SliverIsolation", "SliverResources", "SliverSystem", "SliverNetwork", "PLCProtocol", "CSliverShim",
                           "JSONText"],
            // The escape probe is C, compiled statically into the test image at test time.
            exclude: ["Fixtures"],
            swiftSettings: strict),
    ]
)
