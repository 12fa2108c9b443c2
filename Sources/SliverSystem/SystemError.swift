#if canImport(Glibc)
import Glibc
#endif

/// A failed kernel or file operation: which stage of which operation failed, what exactly was
/// attempted (paths, flags), and the errno the kernel returned.
public struct SystemError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The step that failed, e.g. "cgroup.create" or "state.write".
    public var stage: String
    /// What was attempted, with the object it was attempted on.
    public var attempted: String
    public var errno: Int32

    public init(stage: String, attempted: String, errno: Int32) {
        self.stage = stage
        self.attempted = attempted
        self.errno = errno
    }

    public var description: String {
        "\(stage): \(attempted): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// Runs a syscall-style call (-1 and errno on failure), retrying EINTR, and throws a SystemError
/// naming the stage and what was attempted.
@discardableResult
public func sysCall<T: FixedWidthInteger>(
    _ stage: String, _ attempted: @autoclosure () -> String, _ body: () -> T
) throws(SystemError) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let err = Glibc.errno
        if err == EINTR { continue }
        throw SystemError(stage: stage, attempted: attempted(), errno: err)
    }
}
