import Foundation
import GRDB
import Testing

/// Runs headless Chromium (installed by scripts/install-deps.sh).
func chromium(_ arguments: [String]) throws -> CommandResult {
    let path = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
    guard let path else {
        Issue.record("chromium is not installed: run scripts/install-deps.sh")
        throw CancellationError()
    }
    return try runCommand(path, ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"] + arguments)
}

/// The text of the element with `id` in a dumped DOM.
func element(_ dom: String, _ id: String) -> String? {
    guard let start = dom.range(of: "id=\"\(id)\"") else { return nil }
    guard let open = dom[start.upperBound...].firstIndex(of: ">") else { return nil }
    let rest = dom[dom.index(after: open)...]
    return rest.firstIndex(of: "<").map { String(rest[..<$0]) }
}

/// When the figures shown on a dumped page were computed (`data-generated-at-us` on its body).
func generatedAt(_ dom: String) -> Int64? {
    guard let start = dom.range(of: "data-generated-at-us=\"") else { return nil }
    return Int64(dom[start.upperBound...].prefix { $0.isNumber })
}

@Suite(.serialized) struct DashboardTests {
    /// A replayed session on `livesync dev`: a screenshot of the dashboard while orders arrive,
    /// then, once the session settled, every figure on the page checked against the ERP book and
    /// the stock store, and no buyer's name or phone number on it unmasked.
    @Test func theDashboardShowsTheERPBooksFiguresLiveWithBuyersMasked() async throws {
        let dir = temporaryDirectory("dash")
        let dev = Process()
        dev.executableURL = URL(fileURLWithPath: binDirectory + "/livesync")
        dev.arguments = ["dev", "--data-dir", dir]
        let out = Pipe()
        dev.standardOutput = out
        dev.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try dev.run()
        defer {
            kill(dev.processIdentifier, SIGTERM)
            dev.waitUntilExit()
        }
        // `livesync dev` prints the dashboard URL once its admin server listens.
        var printed = ""
        var url: String?
        let deadline = Date().addingTimeInterval(60)
        while url == nil && Date() < deadline {
            printed += String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
            url = printed.split(separator: "\n").first { $0.hasPrefix("dashboard:") }.map { String($0.split(separator: " ").last!) }
        }
        let dashboard = try #require(url, "livesync dev printed no dashboard URL: \(printed)")

        let replay = Process()
        replay.executableURL = URL(fileURLWithPath: binDirectory + "/livesync")
        replay.arguments = ["replay", "--cluster", dir + "/cluster.json", "--orders", "4000", "--rate", "400", "--seed", "9"]
        replay.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        replay.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try replay.run()
        // Mid-session (the replay lasts about 10 s): the page as an operator sees it.
        try await Task.sleep(for: .seconds(7))
        let screenshot = ProcessInfo.processInfo.environment["LIVESYNC_DASHBOARD_SCREENSHOT"] ?? (dir + "/dashboard.png")
        let shot = try chromium(["--window-size=1400,1100", "--virtual-time-budget=3000", "--screenshot=\(screenshot)", dashboard + "?limit=1"])
        #expect(shot.status == 0)
        #expect(((try? FileManager.default.attributesOfItem(atPath: screenshot)[.size] as? Int) ?? 0) > 20_000, "a screenshot was taken")
        let live = try chromium(["--virtual-time-budget=3000", "--dump-dom", dashboard + "?limit=1"])
        let liveTotal = Int(element(live.stdout, "total") ?? "") ?? -1
        replay.waitUntilExit()
        #expect(replay.terminationStatus == 0)

        // Settled: every accepted order is in the ERP book.
        let erp = try openDatabase(dir + "/book.sqlite")
        try await waitFor("the session to settle", timeout: 60) {
            try await erp.read { db in
                let booked = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM erp_orders") ?? 0
                let pending = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM dispatch_pending_orders") ?? 1
                return booked == 4000 && pending == 0
            }
        }
        #expect((0...4000).contains(liveTotal), "the mid-session page showed the figures (\(liveTotal) booked)")
        #expect(live.stdout.contains("data-generated-at-us=\""), "the page received an update over SSE")

        // The page shows figures computed at most half a refresh before it asked (the dashboard
        // computes once per refresh for all viewers): load it until its figures postdate the settling.
        let settledAtUs = Int64(Date().timeIntervalSince1970 * 1e6)
        var dom = ""
        var shownAtUs: Int64 = 0
        let pageDeadline = Date().addingTimeInterval(60)
        while shownAtUs < settledAtUs && Date() < pageDeadline {
            if !dom.isEmpty { try await Task.sleep(for: .milliseconds(500)) }
            dom = try chromium(["--virtual-time-budget=3000", "--dump-dom", dashboard + "?limit=1"]).stdout
            shownAtUs = generatedAt(dom) ?? 0
        }
        #expect(shownAtUs >= settledAtUs, "the page received figures computed after the session settled")
        // The same figures, computed here from the ERP book.
        let expected = try await erp.read { db -> [String: String] in
            var e: [String: String] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT status, COUNT(*) FROM erp_orders GROUP BY status") { e[row[0]] = String(row[1] as Int) }
            let latencies = try Int64.fetchAll(db, sql: "SELECT decided_at_us - ingested_at_us FROM erp_orders WHERE status = 'synced' ORDER BY 1")
            let avg = Double(latencies.reduce(0, +)) / Double(latencies.count) / 1_000
            // Nearest rank, in whole milliseconds.
            let p99 = Double(latencies[Int((0.99 * Double(latencies.count)).rounded(.up)) - 1] / 1_000)
            e["avg"] = "\((avg * 10).rounded() / 10)"
            e["p99"] = "\((p99 * 10).rounded() / 10)"
            e["rejected"] = String(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM erp_order_lines WHERE reservation = 'rejected'") ?? 0)
            e["total"] = String(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM erp_orders") ?? 0)
            return e
        }
        #expect(element(dom, "total") == "4000" && expected["total"] == "4000")
        #expect(element(dom, "synced") == expected["synced"])
        #expect(element(dom, "failed") == (expected["out_of_stock"] ?? "0"))
        #expect(element(dom, "cancelled") == (expected["cancelled"] ?? "0"))
        #expect(element(dom, "waiting") == "0")
        // JavaScript prints 4757.0 as 4757: compare the numbers.
        #expect(element(dom, "avg").flatMap(Double.init) == expected["avg"].flatMap(Double.init))
        #expect(element(dom, "p99").flatMap(Double.init) == expected["p99"].flatMap(Double.init))
        #expect(element(dom, "rejected") == expected["rejected"])
        #expect(dom.contains("<td>generic</td><td>\(expected["synced"]!)</td><td>\(expected["out_of_stock"] ?? "0")</td><td>\(expected["cancelled"] ?? "0")</td>"), "per-platform row")
        // The hottest SKU's remaining stock, from the stock store.
        let stock = try openDatabase(dir + "/stock.sqlite")
        let hot = try await stock.read { db in try Row.fetchOne(db, sql: "SELECT sku, warehouse, on_hand - reserved FROM stock ORDER BY reserved DESC, sku LIMIT 1")! }
        #expect(dom.contains("<td>\(hot[0] as String)@\(hot[1] as String)</td><td>\(hot[2] as Int64)</td>"), "hot SKU with its remaining stock")
        #expect(dom.contains("<td>dispatch-1</td><td>ready</td>"), "per-consumer rows")
        // Buyers only masked: no full name or phone number of any order shown.
        let buyers = try await erp.read { db in try Row.fetchAll(db, sql: "SELECT buyer_name, buyer_phone FROM erp_orders ORDER BY decided_at_us DESC LIMIT 50") }
        for b in buyers {
            let phone: String = b[1], name: String = b[0]
            // Ingest seals buyer data and passes on masked values (docs/connectors.md): what the book
            // holds masked may be shown; anything unmasked must never reach the page.
            if !phone.contains("*") { #expect(!dom.contains(phone), "phone \(phone) unmasked") }
            if name.count > 1 && !name.contains("*") { #expect(!dom.contains(">\(name)<"), "name unmasked") }
        }
        #expect(dom.contains("****"), "masked phones are shown")
    }
}
