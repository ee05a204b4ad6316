import ParleyCore
import Testing

/// The one `host:port` parser (server, direct-link and listening addresses).
@Suite struct HostAndPortTests {
    @Test func parsesNamesIPv4AndBracketedIPv6() throws {
        let name = try #require(HostAndPort("parley.example:7420"))
        #expect(name.host == "parley.example" && name.port == 7420)
        #expect(HostAndPort("10.0.0.1:1") == HostAndPort(host: "10.0.0.1", port: 1))
        let v6 = try #require(HostAndPort("[fe80::1%eth0]:65535"))
        #expect(v6.host == "fe80::1%eth0" && v6.port == 65535)
        #expect(v6.description == "[fe80::1%eth0]:65535")
        #expect(HostAndPort(host: "::1", port: 9).description == "[::1]:9")
        #expect(HostAndPort(host: "a", port: 9).description == "a:9")
    }

    @Test func refusesWhatIsNotHostColonPort() {
        for text in [
            "", "host", "host:", ":7420", "host:0", "host:65536", "host:+80", "host:8 0", "host:٣", "::1:7420", "[]:80",
            "host:123456",
        ] {
            #expect(HostAndPort(text) == nil, "\(text)")
        }
        #expect(HostAndPort("127.0.0.1:0", allowsPortZero: true)?.port == 0)
        #expect(HostAndPort("127.0.0.1:0") == nil)
    }
}
