import Foundation
import GRDB
import Testing

/// End to end on the embedded broker with the real executables, as `livesync demo` runs them.
@Suite(.serialized) struct DemoTests {
    @Test func tenThousandOrdersWithAHotSKUBelowDemandNeverOversellAndLoseNothing() throws {
        let dir = temporaryDirectory("demo")
        let s = try runDemo(["--orders", "10000", "--seed", "7"], dataDir: dir)
        #expect(s.accepted == 10_000)
        #expect(s.oversold == 0)
        #expect(s.lost == 0)
        #expect(s.accepted == s.synced + s.rejected + s.cancelled)
        #expect(s.rejected > 0, "the hot SKU's demand exceeds its stock, so some orders must be rejected")
        #expect(s.cancelled > 0)
        #expect(s.stock_mismatched_skus == 0)
        #expect(s.refused == 0 && s.failed == 0)
        // The session's CPU per order, read from the OS, for every kind of process.
        #expect(Set(s.cpu_us_per_order.keys).isSuperset(of: ["ingest", "stock", "dispatch", "book", "alerting", "channels", "broker", "load_generator", "pipeline"]),
                "\(s.cpu_us_per_order)")
        #expect(["ingest", "stock", "dispatch", "book", "broker"].allSatisfy { s.cpu_us_per_order[$0, default: 0] > 0 }, "\(s.cpu_us_per_order)")
        let kinds = s.cpu_us_per_order.filter { $0.key != "pipeline" && $0.key != "load_generator" }.values.reduce(0, +)
        #expect(abs(s.cpu_us_per_order["pipeline", default: 0] - kinds) <= 8, "pipeline is the sum of the kinds (each rounded)")
        // Each process's peak resident set, read from the OS.
        #expect(["ingest", "stock", "dispatch", "book", "channels", "broker_and_load_generator"].allSatisfy { s.peak_rss_mib[$0, default: 0] > 0 },
                "\(s.peak_rss_mib)")

        // The hot SKU sold everything it had that was not released by a later refund.
        let stock = try openDatabase(dir + "/stock.sqlite")
        let erp = try openDatabase(dir + "/book.sqlite")
        let (onHand, reserved) = try stock.read { db in
            let row = try Row.fetchOne(db, sql: "SELECT on_hand, reserved FROM stock WHERE sku = 'SKU-0000'")!
            return (row[0] as Int64, row[1] as Int64)
        }
        let syncedHot = try erp.read { db in
            try Int64.fetchOne(db, sql: """
                SELECT COALESCE(SUM(l.quantity), 0) FROM erp_order_lines l JOIN erp_orders o USING (order_id)
                WHERE o.status = 'synced' AND l.sku = 'SKU-0000'
                """) ?? 0
        }
        #expect(reserved == syncedHot)
        #expect(reserved <= onHand)
        let hotRejected = try stock.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM stock_lines WHERE sku = 'SKU-0000' AND status = 2") ?? 0
        }
        #expect(hotRejected > 0, "the hot SKU sold out and refused the excess demand")
        // Each line was decided exactly once.
        let duplicates = try stock.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) - COUNT(DISTINCT event_id) FROM stock_lines") ?? -1
        }
        #expect(duplicates == 0)
    }

    @Test func stockKilledWithSIGKILLMidStreamLosesNothingAndDeductsNothingTwice() throws {
        let dir = temporaryDirectory("kill")
        let s = try runDemo(["--orders", "10000", "--seed", "11", "--kill-stock-after", "3000"], dataDir: dir)
        #expect(s.kills == 1)
        #expect(s.accepted == 10_000)
        #expect(s.lost == 0)
        #expect(s.oversold == 0)
        #expect(s.stock_mismatched_skus == 0, "a line deducted twice or not at all would show here")
        #expect(s.accepted == s.synced + s.rejected + s.cancelled)
        let log = (try? String(contentsOfFile: dir + "/logs/stock.log", encoding: .utf8)) ?? ""
        #expect(log.components(separatedBy: "start offsets loaded from SQLite").count >= 3, "stock ran twice and resumed from SQLite")
    }
}
