/// A network address as Parley writes it: `host:port`, with an IPv6 host in brackets
/// (`[fe80::1]:7420`). The one parser for server addresses, direct-link addresses and listening
/// addresses.
public struct HostAndPort: Sendable, Hashable, CustomStringConvertible, LosslessStringConvertible {
    /// The host: a name, an IPv4 address, or an IPv6 address without brackets.
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` or `[v6]:port`; nil without a host, or without a port in 1...65535
    /// (0...65535 with `allowsPortZero`, for a listener that lets the system choose).
    public init?(_ text: String, allowsPortZero: Bool) {
        guard let separator = text.lastIndex(of: ":") else { return nil }
        let digits = text[text.index(after: separator)...]
        guard (1...5).contains(digits.utf8.count), digits.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
            let port = Int(digits), ((allowsPortZero ? 0 : 1)...65535).contains(port)
        else { return nil }
        var host = text[..<separator]
        if host.hasPrefix("["), host.hasSuffix("]"), host.count > 2 {
            host = host.dropFirst().dropLast()
        } else if host.contains(where: { $0 == ":" || $0 == "[" || $0 == "]" }) {
            // An IPv6 host must be bracketed ("::1:7420" is ambiguous), and brackets hold one.
            return nil
        }
        guard !host.isEmpty else { return nil }
        self.init(host: String(host), port: port)
    }

    /// Parses `host:port` with a port in 1...65535.
    public init?(_ description: String) {
        self.init(description, allowsPortZero: false)
    }

    /// `host:port`, the host in brackets when it is an IPv6 address.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
