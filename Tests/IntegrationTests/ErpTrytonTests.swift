import Foundation
import Testing

/// Orders into a real Tryton through `livesync-erp`, as `livesync demo --erp tryton` runs it:
/// exactly once, cancellations cancelled, the ERP's forecast equal to what LiveSync sold —
/// through a SIGKILL of livesync-erp mid-drain, Tryton stopped and started mid-session, and a
/// stock pull from the ERP in the middle of the burst.
@Suite(.serialized) struct ErpTrytonTests {
    @Test func everySyncedOrderReachesTrytonOnceThroughAKillARestartAndAStockPull() throws {
        let dir = temporaryDirectory("erp-tryton")
        // Through ingest's HTTP at about 100 orders/s, so the restart and the pull land while the
        // ERP is being written (the killed livesync-erp is back in its group by then).
        let s = try runDemo(["--orders", "1500", "--seed", "5", "--rate", "100", "--erp", "tryton",
                             "--kill-erp-after", "300", "--restart-erp-after", "1300", "--pull-stock-after", "700",
                             "--erp-drain-timeout", "600"], dataDir: dir)
        #expect(s.accepted == 1_500)
        #expect(s.lost == 0 && s.oversold == 0)
        #expect(s.stock_mismatched_skus == 0, "the mid-burst pull from the ERP neither oversold nor hid stock")
        #expect(s.erp_kills == 1 && s.erp_server_restarts == 1)
        #expect(s.erp_drain_sec != nil, "the ERP caught up")
        #expect((s.erp_written ?? 0) >= s.synced, "every synced order has its sale order(s) in Tryton")
        #expect(s.erp_missing == 0)
        #expect(s.erp_duplicates == 0)
        #expect(s.erp_not_cancelled == 0)
        #expect(s.erp_stock_mismatched_skus == 0, "Tryton's forecast = initial stock − units LiveSync sold")
        #expect(s.erp_pending == 0)
    }
}
