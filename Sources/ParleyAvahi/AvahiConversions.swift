internal import CAvahi
import ParleyDiscovery

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Conversions between Avahi's C values and Swift values. Pure except for the interface lookup.
enum AvahiConversions {
    /// An `AvahiStringList` (TXT strings) as byte strings. The list's order carries no meaning.
    static func txtEntries(_ list: UnsafeMutablePointer<AvahiStringList>?) -> [[UInt8]] {
        var entries: [[UInt8]] = []
        var node = list
        while let current = node {
            let size = Int(avahi_string_list_get_size(current))
            if let text = avahi_string_list_get_text(current) {
                entries.append(Array(UnsafeBufferPointer(start: text, count: size)))
            }
            node = avahi_string_list_get_next(current)
        }
        return entries
    }

    /// Calls `body` with a freshly built `AvahiStringList` of `entries` in order; frees it after.
    static func withStringList<Result>(
        _ entries: [[UInt8]],
        _ body: (UnsafeMutablePointer<AvahiStringList>?) -> Result
    ) -> Result {
        var list: UnsafeMutablePointer<AvahiStringList>? = nil
        for entry in entries {
            // _add_arbitrary copies the bytes and prepends; reversed below
            list = entry.withUnsafeBufferPointer { avahi_string_list_add_arbitrary(list, $0.baseAddress, $0.count) }
        }
        list = avahi_string_list_reverse(list)
        defer { avahi_string_list_free(list) }
        return body(list)
    }

    /// The numeric text of an address, with `%interface` appended to IPv6 link-local ones.
    static func host(_ address: UnsafePointer<AvahiAddress>, interface: String) -> String {
        var buffer = [CChar](repeating: 0, count: Int(AVAHI_ADDRESS_STR_MAX))
        let text = buffer.withUnsafeMutableBufferPointer { buffer -> String in
            guard let base = buffer.baseAddress, avahi_address_snprint(base, buffer.count, address) != nil else {
                return ""
            }
            return String(cString: base)
        }
        return scoped(host: text, interface: interface)
    }

    /// Appends the zone (`%eth0`) to an IPv6 link-local address (fe80::/10) that has none:
    /// Avahi reports them without it, and they cannot be connected to without it.
    static func scoped(host: String, interface: String) -> String {
        guard !interface.isEmpty, !host.contains("%"), let firstGroup = host.split(separator: ":").first,
            let value = UInt16(firstGroup, radix: 16), value & 0xFFC0 == 0xFE80
        else { return host }
        return "\(host)%\(interface)"
    }

    /// The name of a local interface ("eth0"), or its number as text if it has none.
    static func interfaceName(_ index: AvahiIfIndex) -> String {
        guard index >= 0 else { return "" }
        var buffer = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        return buffer.withUnsafeMutableBufferPointer { buffer -> String in
            guard let base = buffer.baseAddress, if_indextoname(UInt32(index), base) != nil else { return "\(index)" }
            return String(cString: base)
        }
    }

    /// A duration as whole milliseconds for Avahi timeouts (0 ... UInt32.max).
    static func milliseconds(_ duration: Duration) -> UInt32 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 0 }
        let total = seconds.multipliedReportingOverflow(by: 1000)
        guard !total.overflow else { return .max }
        let millis = total.partialValue + attoseconds / 1_000_000_000_000_000
        return UInt32(clamping: millis)
    }
}
