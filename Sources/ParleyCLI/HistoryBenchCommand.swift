import ArgumentParser
import Foundation
import Logging
import ParleyCore
import ParleyServerStore

/// `parley bench-history`: fills a history database with messages of realistic text, then
/// measures full-text searches on it and reports the database's size per million messages.
struct HistoryBenchCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-history",
        abstract: "Measure history search: fill a history database, then time contains-word queries.",
        discussion: """
            Writes --messages messages (words drawn from a Zipf distribution over a vocabulary of \
            common words and a long tail, 3 to 30 words each, among --users users) into a fresh \
            history database (the server's history.sqlite format) in --data DIR (default: a \
            temporary directory, removed afterwards), in transactions of 10,000. Then runs \
            --queries searches of each kind and prints their p50 and p99: a contains-word query \
            over everything (a word of middling frequency, a different one each time; the first \
            page of 50, newest first), the same with a conversation filter (a user's view), and a \
            rare word. Prints the database size (with its WAL, after a checkpoint) per million \
            messages.
            """
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var output: OutputOptions

    @Option(help: "How many messages to write.")
    var messages = 1_000_000

    @Option(help: "Among how many users.")
    var users = 1000

    @Option(help: "How many searches of each kind.")
    var queries = 200

    @Option(name: .customLong("data"), help: "Keep the database in this directory (default: a temporary one).")
    var dataDirectory: String?

    func validate() throws {
        guard messages >= 1000 else { throw ValidationError("--messages must be at least 1000") }
        guard users >= 2 else { throw ValidationError("--users must be at least 2") }
        guard queries >= 1 else { throw ValidationError("--queries must be at least 1") }
    }

    struct Report: Encodable {
        var event = "historyBench"
        var messages: Int
        var fillSeconds: Double
        var databaseBytes: Int64
        var bytesPerMillion: Int64
        var searches: [Search]
    }

    struct Search: Encodable {
        var name: String
        var queries: Int
        var p50Milliseconds: Double
        var p99Milliseconds: Double
        var averageResults: Double
    }

    func run() async throws {
        let out = Output(json: output.json)
        let temporary = dataDirectory == nil
        let directory =
            dataDirectory
            ?? FileManager.default.temporaryDirectory.appendingPathComponent(
                "parley-history-bench-\(UUID().uuidString)"
            )
            .path
        defer {
            if temporary {
                do {
                    try FileManager.default.removeItem(atPath: directory)
                } catch {
                    Output.note("could not remove \(directory): \(error)")
                }
            }
        }
        let path = URL(fileURLWithPath: directory).appendingPathComponent(HistoryStore.fileName).path
        guard !FileManager.default.fileExists(atPath: path) else {
            throw CommandFailure(message: "\(path) exists: give an empty --data directory")
        }
        let store = try HistoryStore(path: path)
        var text = TextGenerator(seed: 2026)
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        let filling = ContinuousClock.now
        var written = 0
        while written < messages {
            let count = min(10_000, messages - written)
            let batch = (0..<count).map { offset -> HistoryEntry in
                let index = written + offset
                let sender = UInt32(1000 + text.next(below: users))
                var recipient = UInt32(1000 + text.next(below: users))
                if recipient == sender { recipient = 1000 + (recipient - 999) % UInt32(users) }
                return HistoryEntry(
                    messageID: MessageID(UInt64(index + 1)),
                    sender: UserID(sender),
                    recipient: UserID(recipient),
                    kind: .text,
                    body: Array(text.sentence().utf8),
                    sentAt: start.addingTimeInterval(Double(index) * 0.5),
                    deliveredAt: index % 10 == 0 ? nil : start.addingTimeInterval(Double(index) * 0.5 + 0.2)
                )
            }
            try store.record(batch)
            written += count
            if written % 100_000 == 0 { Output.note("written \(written) messages") }
        }
        let fillSeconds = Double((ContinuousClock.now - filling).components.seconds)
        let bytes = try store.checkpointedSize()

        var searches: [Search] = []
        var picker = TextGenerator(seed: 7)
        searches.append(
            try measure("contains, a middling word, everything", queries: queries, store: store) {
                HistoryQuery(text: .init(.contains, TextGenerator.vocabulary[20 + picker.next(below: 200)]))
            })
        searches.append(
            try measure("contains, a middling word, one user's conversation", queries: queries, store: store) {
                HistoryQuery(
                    conversationWith: [UserID(UInt32(1000 + picker.next(below: users)))],
                    text: .init(.contains, TextGenerator.vocabulary[20 + picker.next(below: 200)])
                )
            })
        searches.append(
            try measure("contains, a rare word, everything", queries: queries, store: store) {
                HistoryQuery(
                    text: .init(
                        .contains,
                        TextGenerator.vocabulary[TextGenerator.vocabulary.count - 1 - picker.next(below: 500)]))
            })
        let report = Report(
            messages: messages,
            fillSeconds: fillSeconds,
            databaseBytes: bytes,
            bytesPerMillion: Int64(Double(bytes) * 1_000_000 / Double(messages)),
            searches: searches
        )
        var lines = [
            "\(messages) messages written in \(Int(fillSeconds)) s; database \(bytes / 1_048_576) MiB, \(report.bytesPerMillion / 1_048_576) MiB per million messages"
        ]
        for search in searches {
            lines.append(
                "\(search.name): p50 \(String(format: "%.2f", search.p50Milliseconds)) ms, p99 \(String(format: "%.2f", search.p99Milliseconds)) ms (\(search.queries) queries, \(String(format: "%.1f", search.averageResults)) results each)"
            )
        }
        try out.emit(report, text: lines.joined(separator: "\n"))
    }

    private func measure(
        _ name: String, queries: Int, store: HistoryStore, _ makeQuery: () -> HistoryQuery
    ) throws -> Search {
        var summary = LatencySummary()
        var results = 0
        for _ in 0..<queries {
            let query = makeQuery()
            let started = ContinuousClock.now
            results += try store.search(query).entries.count
            summary.record(nanoseconds: (ContinuousClock.now - started).nanoseconds)
        }
        return Search(
            name: name,
            queries: queries,
            p50Milliseconds: summary.percentile(0.5) ?? 0,
            p99Milliseconds: summary.percentile(0.99) ?? 0,
            averageResults: Double(results) / Double(queries)
        )
    }
}

/// Sentences of words from a vocabulary with a Zipf-like distribution (a few words are very
/// common, most are rare), from a fixed seed.
struct TextGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    /// Common words first, then a long tail of made-up words: about 20,000 in all.
    static let vocabulary: [String] = {
        let common = """
            the to and a of in is you that it for on we have this be with are not at can will do \
            your i me my so but if as or all just get was what about from now need please meeting \
            today tomorrow time report invoice order client project team update call check send \
            review ready done issue ticket server deploy build release test fix change plan budget \
            lunch office week morning afternoon monday friday shipment delivery stock price quote \
            contract sign approve draft file document email phone number address room floor desk \
            printer network password account access login error problem question answer thanks \
            sorry great good fine okay sure yes no maybe later soon asap urgent important note \
            reminder agenda minutes notes slides demo customer supplier warehouse truck pallet box \
            label scan inventory count shift manager schedule holiday leave sick training safety
            """.split(whereSeparator: \.isWhitespace).map(String.init)
        let syllables = [
            "ka", "lo", "mi", "ren", "tu", "sa", "vel", "no", "dri", "pa", "qua", "zen", "bo", "li", "ter",
        ]
        var tail: [String] = []
        for a in syllables {
            for b in syllables {
                for c in syllables { tail.append(a + b + c) }
            }
        }
        // 3,375 three-syllable words, and as many with a suffix for a longer tail.
        return common + tail + tail.map { $0 + "s" } + tail.map { $0 + "ing" } + tail.map { $0 + "er" }
            + tail.map { $0 + "ed" }
    }()

    mutating func nextRandom() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state ^ (state >> 29)
    }

    mutating func next(below bound: Int) -> Int {
        Int(nextRandom() % UInt64(bound))
    }

    /// A word index with probability about 1/(rank+1) (Zipf with exponent 1).
    mutating func word() -> String {
        let count = Double(Self.vocabulary.count)
        let uniform = Double(nextRandom() >> 11) / Double(1 << 53)
        let rank = Int(exp(uniform * log(count + 1))) - 1
        return Self.vocabulary[min(max(rank, 0), Self.vocabulary.count - 1)]
    }

    mutating func sentence() -> String {
        let words = 3 + next(below: 28)
        var text = ""
        for index in 0..<words {
            if index > 0 { text += index % 9 == 0 ? ", " : " " }
            text += word()
        }
        return text + (next(below: 4) == 0 ? "?" : ".")
    }
}
