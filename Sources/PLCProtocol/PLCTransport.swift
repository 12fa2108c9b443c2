#if canImport(Glibc)
import Glibc
#endif

/// Carries one XML-RPC request body to PLC and brings back the HTTP answer.
///
/// Two transports, chosen by the URL's scheme (`PLCTransports.make`):
/// - `http://` (loopback only: a local plcd, tests): `LoopbackHTTPTransport`, a minimal HTTP/1.1
///   client on a socket, no dependency at all.
/// - `https://`: `CurlTransport`, `curl --cacert CA` as a subprocess, which is what PlanetLab's
///   NodeManager did (safexmlrpc/curlwrapper). FoundationNetworking's URLSession was the other
///   candidate and was rejected: on Linux it cannot pin a CA per request (no server-trust
///   challenge; only the process-wide `URLSessionCertificateAuthorityInfoFile` environment
///   variable), it starts its own threads inside the daemon, and it adds libcurl + Foundation
///   networking to the binary anyway. A curl process per poll (every 600 s) costs nothing,
///   has a hard kill for timeouts, and its TLS stack is the distribution's, patched by apt.
public protocol PLCTransport: Sendable {
    func post(_ body: [UInt8]) throws(PLCProtocolError) -> HTTPResponse
}

public enum PLCTransports {
    /// The transport for an endpoint. `caCert` is required for https: a node trusts only the CA
    /// its PLC is configured with, never the system's whole store.
    public static func make(_ endpoint: PLCEndpoint, caCert: String?, timeout: Double = 90,
                            curl: String = "/usr/bin/curl") throws(PLCProtocolError) -> any PLCTransport {
        switch endpoint.scheme {
        case .http:
            return LoopbackHTTPTransport(endpoint: endpoint, timeout: timeout)
        case .https:
            guard let caCert, !caCert.isEmpty else {
                throw PLCProtocolError(.invalidArgument, stage: "plc.url", "\(endpoint.url): https needs a CA certificate (ca_cert)")
            }
            return CurlTransport(endpoint: endpoint, caCert: caCert, timeout: timeout, curl: curl)
        }
    }
}

/// Milliseconds left until a CLOCK_MONOTONIC deadline, for poll().
struct Deadline {
    let end: Double

    init(seconds: Double) { end = Deadline.now() + seconds }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    var remainingMilliseconds: Int32 {
        let left = (end - Deadline.now()) * 1000
        return left <= 0 ? 0 : Int32(min(left.rounded(.up), Double(Int32.max)))
    }

    var expired: Bool { Deadline.now() >= end }
}

func errnoText(_ err: Int32) -> String { "\(String(cString: strerror(err))) (errno \(err))" }
