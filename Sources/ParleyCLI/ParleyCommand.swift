import ArgumentParser
import Foundation
import Logging
import ParleyCore

/// The `parley` executable: a server, client commands for scripts and people, and a load generator.
///
/// Standard output carries only results (one JSON object per line with `--json`); logs and
/// errors go to standard error, so scripts can read stdout as is.
@main
struct ParleyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley",
        abstract: "Run a Parley server, talk to one, or measure one.",
        discussion: """
            Exit codes: 0 success; 1 failure; 2 usage; 3 cannot connect; 4 the server refused \
            (wrong password, unknown user, ...); 5 a recipient failed (send); 6 fewer results than \
            expected arrived in time (receive --count, send --receipt, bench).
            """,
        subcommands: [
            ServerCommand.self, AdminCommand.self,
            RegisterCommand.self,
            SendCommand.self,
            ReceiveCommand.self,
            SendFileCommand.self, TransfersCommand.self,
            WhoisCommand.self,
            ExistsCommand.self,
            FindCommand.self,
            ChatCommand.self,
            ContactsCommand.self, StatusCommand.self, WatchCommand.self,
            InvokeCommand.self,
            HistoryCommand.self,
            BenchCommand.self, HistoryBenchCommand.self,
            CampaignClientCommand.self,
            NodeCommand.self, PeersCommand.self, OutboxCommand.self, UnpinCommand.self,
        ]
    )

    /// Parses, bootstraps logging (the only place that does), runs the command, and turns errors
    /// into one line on standard error plus an exit code.
    static func main() async {
        let command: any ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            exit(reporting: error)
        }
        bootstrapLogging(for: command)
        do {
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                var command = command
                try command.run()
            }
        } catch {
            exit(reporting: error)
        }
    }

    private static func bootstrapLogging(for command: any ParsableCommand) {
        let level: Logger.Level
        var format = LogFormat.text
        if let command = command as? any LoggingCommand {
            level = command.output.logLevel?.level ?? type(of: command).defaultLogLevel
            format = command.output.logFormat
        } else {
            level = .warning
        }
        RuntimeLogLevel.level = level
        LoggingSystem.bootstrap { [format] label in
            var inner: any LogHandler
            switch format {
            case .text: inner = StreamLogHandler.standardError(label: label)
            case .json: inner = JSONLogHandler(label: label, logLevel: .trace)
            }
            // The inner handler lets everything through; the process-wide level filters.
            inner.logLevel = .trace
            return RuntimeLevelLogHandler(inner: inner)
        }
    }

    private static func exit(reporting error: any Error) -> Never {
        switch error {
        case let code as ExitCode:
            // The command already printed what there was to say.
            Foundation.exit(code.rawValue)
        case let error as ParleyError:
            Output.note("error: \(ErrorText.describe(error))")
            Foundation.exit(ExitStatus.code(for: error).rawValue)
        case let failure as CommandFailure:
            Output.note("error: \(failure.message)")
            Foundation.exit(failure.exitCode.rawValue)
        default:
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                if !message.isEmpty { print(message) }
                Foundation.exit(ExitCode.success.rawValue)
            }
            if code == .validationFailure {
                // ArgumentParser's usage errors (EX_USAGE) become exit code 2, like most Unix tools,
                // and one line like every other error, with the help hint ArgumentParser adds.
                // "See 'parley send --help' for more information." -> " (see 'parley send --help' ...)"
                let hint = message.split(separator: "\n")
                    .map { $0.trimmingCharacters(in: .whitespaces) }
                    .first { $0.hasPrefix("See '") && $0.hasSuffix(".") }
                    .map { " (see" + $0.dropFirst("See".count).dropLast() + ")" }
                Output.note("error: \(Self.message(for: error))\(hint ?? "")")
                Foundation.exit(ExitStatus.usage.rawValue)
            }
            Output.note(message.isEmpty ? "error: \(error)" : "error: \(message)")
            Foundation.exit(code == .failure ? ExitStatus.failure.rawValue : code.rawValue)
        }
    }
}
