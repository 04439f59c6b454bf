import Bootstrap
import ErpAdapters
import ErpSync
import Testing
import Worker

@Suite struct ErpSettingsTests {
    func settings(_ env: [String: String]) async throws -> LiveSyncConfig {
        try await LiveSyncConfig(file: nil, environment: env)
    }

    @Test(arguments: [
        ("kingdee", ["LIVESYNC_ERP_KINGDEE_URL": "http://k/k3cloud/", "LIVESYNC_ERP_KINGDEE_ACCT_ID": "A", "LIVESYNC_ERP_KINGDEE_USER": "u", "LIVESYNC_ERP_KINGDEE_PASSWORD": "p"]),
        ("yonyou", ["LIVESYNC_ERP_YONYOU_URL": "https://y", "LIVESYNC_ERP_YONYOU_APP_KEY": "k", "LIVESYNC_ERP_YONYOU_APP_SECRET": "s", "LIVESYNC_ERP_YONYOU_TRANSACTION_TYPE": "SO1"]),
        ("jushuitan", ["LIVESYNC_ERP_JUSHUITAN_APP_KEY": "k", "LIVESYNC_ERP_JUSHUITAN_APP_SECRET": "s", "LIVESYNC_ERP_JUSHUITAN_ACCESS_TOKEN": "t", "LIVESYNC_ERP_JUSHUITAN_SHOP_ID": "10"]),
        ("odoo", ["LIVESYNC_ERP_ODOO_URL": "http://o", "LIVESYNC_ERP_ODOO_DATABASE": "d", "LIVESYNC_ERP_ODOO_LOGIN": "l", "LIVESYNC_ERP_ODOO_PASSWORD": "p"]),
        ("webhook", ["LIVESYNC_ERP_WEBHOOK_URL": "https://erp.example.com/livesync", "LIVESYNC_ERP_WEBHOOK_SECRET": "s"]),
    ])
    func eachKindIsBuiltFromItsSettings(_ kind: String, _ env: [String: String]) async throws {
        let adapter = try ErpAdapterSettings.adapter(kind: kind, settings: try await settings(env))
        #expect(adapter.kind == kind)
        #expect(adapter.maxBatchSize >= 1)
    }

    @Test func aMissingCredentialIsRefusedNamingItsVariable() async throws {
        let noPassword = try await settings(["LIVESYNC_ERP_ODOO_URL": "http://o", "LIVESYNC_ERP_ODOO_DATABASE": "d", "LIVESYNC_ERP_ODOO_LOGIN": "l"])
        #expect { _ = try ErpAdapterSettings.adapter(kind: "odoo", settings: noPassword) } throws: { "\($0)".contains("LIVESYNC_ERP_ODOO_PASSWORD") }
        let badURL = try await settings(["LIVESYNC_ERP_WEBHOOK_URL": "erp.example.com", "LIVESYNC_ERP_WEBHOOK_SECRET": "s"])
        #expect { _ = try ErpAdapterSettings.adapter(kind: "webhook", settings: badURL) } throws: { "\($0)".contains("http(s) URL") }
    }

    @Test func theTargetSettingsAreCheckedAtStart() async throws {
        let sap = try await settings(["LIVESYNC_ERP_KIND": "sap"])
        #expect { _ = try ErpSyncConfiguration.load(sap) } throws: { "\($0)".contains("erp.kind must be one of") }
        let returned = try await settings(["LIVESYNC_ERP_KIND": "odoo", "LIVESYNC_ERP_SEND": "paid,returned"])
        #expect { _ = try ErpSyncConfiguration.load(returned) } throws: { "\($0)".contains("'returned' is not a state") }
        let sometimes = try await settings(["LIVESYNC_ERP_KIND": "odoo", "LIVESYNC_ERP_TRIGGER": "sometimes"])
        #expect { _ = try ErpSyncConfiguration.load(sometimes) } throws: { "\($0)".contains("erp.trigger") }
        let c = try ErpSyncConfiguration.load(try await settings(["LIVESYNC_ERP_KIND": "odoo", "LIVESYNC_ERP_TARGET": "odoo-cn", "LIVESYNC_ERP_TRIGGER": "each", "LIVESYNC_ERP_SEND": "paid,shipped"]))
        #expect(c.group == "livesync-erp-odoo-cn")
        #expect(c.writer.trigger == .eachOrder)
        #expect(c.send == [.paid, .shipped])
    }
}
