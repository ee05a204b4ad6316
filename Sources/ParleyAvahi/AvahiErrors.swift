internal import CAvahi
import ParleyDiscovery

/// An error number from libavahi-client, kept as the ``DiscoveryError/cause``.
struct AvahiError: Error, Sendable, CustomStringConvertible {
    let code: Int32

    var description: String {
        let text = avahi_strerror(code).map { String(cString: $0) } ?? "unknown error"
        return "Avahi error \(code): \(text)"
    }
}

/// The one place that maps an Avahi error number to a ``DiscoveryError``.
/// - Parameters:
///   - code: a negative `AVAHI_ERR_*` number (from a return value or `avahi_client_errno`).
///   - operation: what was being done, for the message ("creating the client").
func discoveryError(avahi code: Int32, _ operation: String) -> DiscoveryError {
    let avahi = AvahiError(code: code)
    let kind: DiscoveryError.Code =
        switch code {
        case Int32(AVAHI_ERR_NO_DAEMON), Int32(AVAHI_ERR_DISCONNECTED), Int32(AVAHI_ERR_DBUS_ERROR),
            Int32(AVAHI_ERR_BAD_STATE), Int32(AVAHI_ERR_ACCESS_DENIED):
            .daemonUnavailable
        case Int32(AVAHI_ERR_COLLISION):
            .nameCollision
        case Int32(AVAHI_ERR_INVALID_SERVICE_NAME), Int32(AVAHI_ERR_INVALID_SERVICE_TYPE),
            Int32(AVAHI_ERR_INVALID_PORT), Int32(AVAHI_ERR_INVALID_RECORD), Int32(AVAHI_ERR_INVALID_KEY),
            Int32(AVAHI_ERR_INVALID_DOMAIN_NAME), Int32(AVAHI_ERR_INVALID_HOST_NAME):
            .invalidRecord
        case Int32(AVAHI_ERR_TIMEOUT):
            .timedOut
        default:
            .backendFailure
        }
    return DiscoveryError(code: kind, message: "\(operation) failed: \(avahi)", cause: avahi)
}
