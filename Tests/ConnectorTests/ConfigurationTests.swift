import LiveSyncTesting
import Bootstrap
import AsyncHTTPClient
import Connectors
import Foundation
import Model
import Testing
import Worker

/// The connectors' settings as a merchant writes them (environment variables here).
@Suite struct ConfigurationTests {
    @Test func developmentSettingsEnableTheFourPushConnectorsAndMappingOverridesApply() async throws {
        var env = ConnectorsConfiguration.developmentEnvironment(apiBase: "http://127.0.0.1:1")
        env["LIVESYNC_CONNECTORS_DOUYIN_MAPPING_SKU"] = "out_sku_id"
        env["LIVESYNC_CONNECTORS_POLL_TAOBAO_APP_KEY"] = "tb"
        env["LIVESYNC_CONNECTORS_POLL_TAOBAO_APP_SECRET"] = "s"
        env["LIVESYNC_CONNECTORS_POLL_TAOBAO_SHOPS"] = "tb-1=acc:ref;tb-2=acc2"
        env["LIVESYNC_CONNECTORS_TAOBAO_MAPPING_WAREHOUSE"] = "store_code"
        env["LIVESYNC_CONNECTORS_POLL_DOUYIN_APP_KEY"] = "dy"
        env["LIVESYNC_CONNECTORS_POLL_DOUYIN_APP_SECRET"] = "s"
        env["LIVESYNC_CONNECTORS_POLL_DOUYIN_SHOPS"] = "9=a:r"
        env["LIVESYNC_PII_KEY"] = Data(repeating: 7, count: 32).base64EncodedString()
        let config = try ConnectorsConfiguration.load(try await LiveSyncConfig(file: nil, environment: env), client: .shared)
        #expect(Set(config.platforms.map(\.connector.platform)) == [.douyin, .kuaishou, .wechatChannels, .tiktokShop])
        #expect(config.platforms.first { $0.connector.platform == .douyin }?.mapping.sku == "out_sku_id")
        #expect(config.platforms.first { $0.connector.platform == .kuaishou }?.mapping == FieldMapping.kuaishou)
        #expect(config.sealer?.keyID == "k1")
        let taobao = try #require(config.polls.first { $0.api.platform == .taobao })
        #expect(taobao.shops == ["tb-1": ShopTokens(accessToken: "acc", refreshToken: "ref"), "tb-2": ShopTokens(accessToken: "acc2", refreshToken: "")])
        #expect(taobao.mapping.warehouse == "store_code")
        // Douyin's search mapping takes the push mapping's SKU override but keeps its own root.
        let douyin = try #require(config.polls.first { $0.api.platform == .douyin })
        #expect(douyin.mapping.sku == "out_sku_id" && douyin.mapping.orderRoot == "")
    }

    @Test func aSettingThatIsNotAnIntegerIsRefusedNamingItsKeyNotReplacedByTheDefault() async throws {
        #expect(LiveSyncConfig.environmentName("kafka.sessionTimeoutMs") == "LIVESYNC_KAFKA_SESSION_TIMEOUT_MS")
        let bad = try await LiveSyncConfig(file: nil, environment: ["LIVESYNC_INGEST_PORT": "80a"])
        #expect { _ = try bad.int("ingest.port", default: 8080) } throws: { "\($0)".contains("ingest.port") && "\($0)".contains("80a") }
        let good = try await LiveSyncConfig(file: nil, environment: ["LIVESYNC_INGEST_PORT": "8081"])
        #expect(try good.int("ingest.port", default: 8080) == 8081)
        #expect(try good.int("ingest.maxBodyBytes", default: 7) == 7)
        // In the file: a number is taken, a fraction refused.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("livesync-int-\(UUID().uuidString).json").path
        try #"{"livesync": {"ingest": {"port": 8082, "maxBodyBytes": 10.5}}}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let fromFile = try await LiveSyncConfig(file: file, environment: [:])
        #expect(try fromFile.int("ingest.port", default: 8080) == 8082)
        #expect(throws: (any Error).self) { _ = try fromFile.int("ingest.maxBodyBytes", default: 1) }
    }

    @Test func aPushOnlyKuaishouShopNeedsNoSignSecret() async throws {
        var env = ConnectorsConfiguration.developmentEnvironment(apiBase: "http://127.0.0.1:1")
        env["LIVESYNC_CONNECTORS_KUAISHOU_SIGN_SECRET"] = nil
        let config = try ConnectorsConfiguration.load(try await LiveSyncConfig(file: nil, environment: env), client: .shared)
        let kuaishou = try #require(config.platforms.first { $0.connector.platform == .kuaishou })
        #expect(kuaishou.details == nil)
        // With the secret, order details are fetched from Kuaishou's API.
        env["LIVESYNC_CONNECTORS_KUAISHOU_SIGN_SECRET"] = "s"
        let full = try ConnectorsConfiguration.load(try await LiveSyncConfig(file: nil, environment: env), client: .shared)
        #expect(full.platforms.first { $0.connector.platform == .kuaishou }?.details != nil)
    }

    /// `livesync dev` lets `LIVESYNC_CONNECTORS_*` override its credentials: the fake platform API and
    /// replay must then use the same ones the connectors are configured with.
    @Test func overriddenDevelopmentCredentialsReachTheConnectorsAndTheFakeAlike() {
        var overrides: [String: String] = [:]
        for (key, value) in ConnectorsConfiguration.developmentEnvironment(apiBase: "http://127.0.0.1:1")
        where !key.hasSuffix("_API_BASE") && !key.hasSuffix("_AUTH_BASE") && !key.hasSuffix("_ACCESS_TOKENS") && !key.hasSuffix("_ACCESS_TOKEN")
            && !key.hasSuffix("_SHOP_ID") && !key.hasSuffix("KUAISHOU_APP_SECRET") {
            overrides[key] = "custom-" + value
        }
        #expect(overrides.count == 10)
        let credentials = PlatformCredentials.development(overriddenBy: overrides)
        let env = ConnectorsConfiguration.developmentEnvironment(apiBase: "http://127.0.0.1:1", credentials: credentials)
        for (key, value) in overrides { #expect(env[key] == value, "\(key)") }
        #expect(credentials.jdAppKey == PlatformCredentials.development.jdAppKey)
        #expect(PlatformCredentials.development(overriddenBy: ["LIVESYNC_CONNECTORS_POLL_JD_APP_KEY": "jd-own"]).jdAppKey == "jd-own")
    }

    @Test func unusableSecretsAreConfigurationErrorsNotSilentlyIgnored() async throws {
        var env = ConnectorsConfiguration.developmentEnvironment(apiBase: "http://127.0.0.1:1")
        env["LIVESYNC_CONNECTORS_WECHAT_ENCODING_AES_KEY"] = "too-short"
        await #expect(throws: (any Error).self) { _ = try ConnectorsConfiguration.load(try await LiveSyncConfig(file: nil, environment: env), client: .shared) }
        env = ConnectorsConfiguration.developmentEnvironment(apiBase: "http://127.0.0.1:1")
        env["LIVESYNC_PII_KEY"] = "c2hvcnQ="
        await #expect(throws: (any Error).self) { _ = try ConnectorsConfiguration.load(try await LiveSyncConfig(file: nil, environment: env), client: .shared) }
        env = [:]
        #expect(try ConnectorsConfiguration.load(try await LiveSyncConfig(file: nil, environment: env), client: .shared).platforms.isEmpty)
    }
}
