import Foundation
import ParleyServer

/// The read-only HTML status page: rendered with the current status (so it shows something
/// without JavaScript), then refreshed every 2 s from `/status` by a few lines of script, which
/// also computes message rates between two refreshes.
enum StatusPage {
    static func html(_ status: ParleyServer.Status) -> String {
        let settings = status.settings
        let users =
            status.onlineUsers.isEmpty
            ? "<li class=\"none\">nobody</li>"
            : status.onlineUsers.map { "<li>\($0)</li>" }.joined()
        let rows: [(String, String)] = [
            ("Address", "\(settings.host):\(settings.port)"),
            ("TLS", settings.tls + (settings.tlsFingerprint.map { " (\($0))" } ?? "")),
            ("Maximum connections", "\(settings.maximumConnections)"),
            ("Maximum frame size", "\(settings.maximumFrameSize) bytes"),
            ("Delivery window", "\(settings.deliveryWindow) messages"),
            ("Outbound queue limit", "\(settings.outboundQueueLimit) bytes"),
            ("Heartbeat / idle timeout", "\(settings.heartbeatSeconds) s / \(settings.idleTimeoutSeconds) s"),
            ("Durability", settings.durability),
            ("Data directory", settings.dataDirectory),
        ]
        let settingsRows = rows.map { "<tr><th>\(escape($0.0))</th><td>\(escape($0.1))</td></tr>" }.joined()
        return """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <title>Parley server \(escape(status.serverName))</title>
            <style>
            body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
            h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
            table { border-collapse: collapse; } th, td { text-align: left; padding: 0.2em 1em 0.2em 0; }
            .number { font-variant-numeric: tabular-nums; }
            ul#users { columns: 6; list-style: none; padding: 0; } .none { color: #888; }
            </style>
            </head>
            <body>
            <h1>Parley server <span id="name">\(escape(status.serverName))</span></h1>
            <p>Version <span id="version">\(escape(status.version))</span>, up
            <span id="uptime">\(Int(status.uptimeSeconds))</span> s. Refreshed every 2 s.</p>
            <h2>Now</h2>
            <table>
            <tr><th>Connections</th><td class="number" id="connections">\(status.connections)</td></tr>
            <tr><th>Sessions online</th><td class="number" id="sessions">\(status.sessionsOnline)</td></tr>
            <tr><th>Guests</th><td class="number" id="guests">\(status.guests)</td></tr>
            <tr><th>Messages waiting to be stored</th><td class="number" id="queue">\(status.commitQueueDepth)</td></tr>
            </table>
            <h2>Messages</h2>
            <table>
            <tr><th></th><th>total</th><th>per second</th></tr>
            \(messageRow("received", status.messages.received))
            \(messageRow("stored", status.messages.stored))
            \(messageRow("delivered", status.messages.delivered))
            \(messageRow("acknowledged", status.messages.acknowledged))
            </table>
            <h2>Online users (<span id="online-count">\(status.sessionsOnline)</span>)</h2>
            <ul id="users">\(users)</ul>
            <h2>Configuration</h2>
            <table>\(settingsRows)</table>
            <script>
            \(script)
            </script>
            </body>
            </html>

            """
    }

    private static func messageRow(_ name: String, _ total: Int) -> String {
        "<tr><th>\(name)</th><td class=\"number\" id=\"\(name)\">\(total)</td>"
            + "<td class=\"number\" id=\"\(name)-rate\">-</td></tr>"
    }

    private static let script = """
        let last = null;
        function set(id, value) { document.getElementById(id).textContent = value; }
        async function refresh() {
          try {
            const response = await fetch('/status', { cache: 'no-store' });
            const status = await response.json();
            set('uptime', Math.floor(status.uptimeSeconds));
            set('connections', status.connections);
            set('sessions', status.sessionsOnline);
            set('guests', status.guests);
            set('queue', status.commitQueueDepth);
            set('online-count', status.sessionsOnline);
            const now = performance.now();
            for (const name of ['received', 'stored', 'delivered', 'acknowledged']) {
              set(name, status.messages[name]);
              if (last) {
                const rate = (status.messages[name] - last.messages[name]) / ((now - last.at) / 1000);
                set(name + '-rate', rate.toFixed(1));
              }
            }
            const users = document.getElementById('users');
            users.replaceChildren(...(status.onlineUsers.length ? status.onlineUsers : ['nobody']).map(user => {
              const item = document.createElement('li');
              item.textContent = user;
              if (user === 'nobody') item.className = 'none';
              return item;
            }));
            last = { at: now, messages: status.messages };
          } catch (error) {
            set('uptime', 'unknown (the server does not answer)');
          }
        }
        refresh();
        setInterval(refresh, 2000);
        """

    private static func escape(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
