import Worker
import Kafka
import Ingest
import Model
import Connectors

extension ConnectorsConfiguration {
    /// Settings (as environment variables) that enable every connector with the development
    /// credentials against a fake platform API at `apiBase` — what `livesync dev` and the tests use.
    public static func developmentEnvironment(apiBase: String, credentials c: PlatformCredentials = .development, accessToken: String = "dev-access-token",
                                              refreshToken: String = "dev-refresh-token") -> [String: String] {
        [
            "LIVESYNC_CONNECTORS_DOUYIN_APP_KEY": c.douyinAppKey, "LIVESYNC_CONNECTORS_DOUYIN_APP_SECRET": c.douyinAppSecret,
            "LIVESYNC_CONNECTORS_DOUYIN_API_BASE": apiBase, "LIVESYNC_CONNECTORS_DOUYIN_ACCESS_TOKENS": "*=\(accessToken):\(refreshToken)",
            "LIVESYNC_CONNECTORS_KUAISHOU_APP_KEY": c.kuaishouAppKey, "LIVESYNC_CONNECTORS_KUAISHOU_SIGN_SECRET": c.kuaishouSignSecret,
            "LIVESYNC_CONNECTORS_KUAISHOU_MESSAGE_SECRET": c.kuaishouMessageSecret, "LIVESYNC_CONNECTORS_KUAISHOU_API_BASE": apiBase,
            "LIVESYNC_CONNECTORS_KUAISHOU_ACCESS_TOKENS": "*=\(accessToken):\(refreshToken)",
            "LIVESYNC_CONNECTORS_KUAISHOU_APP_SECRET": "dev-kuaishou-app-secret",
            "LIVESYNC_CONNECTORS_WECHAT_TOKEN": c.wechatToken, "LIVESYNC_CONNECTORS_WECHAT_ENCODING_AES_KEY": c.wechatEncodingAESKey,
            "LIVESYNC_CONNECTORS_WECHAT_APP_ID": c.wechatAppID, "LIVESYNC_CONNECTORS_WECHAT_SHOP_ID": "wx-shop-1",
            "LIVESYNC_CONNECTORS_WECHAT_ACCESS_TOKEN": accessToken, "LIVESYNC_CONNECTORS_WECHAT_API_BASE": apiBase,
            "LIVESYNC_CONNECTORS_TIKTOK_APP_KEY": c.tiktokAppKey, "LIVESYNC_CONNECTORS_TIKTOK_APP_SECRET": c.tiktokAppSecret,
            "LIVESYNC_CONNECTORS_TIKTOK_API_BASE": apiBase, "LIVESYNC_CONNECTORS_TIKTOK_AUTH_BASE": apiBase,
            "LIVESYNC_CONNECTORS_TIKTOK_ACCESS_TOKENS": "*=\(accessToken):\(refreshToken)",
        ]
    }
}

extension PlatformCredentials {
    /// The development credentials with any `LIVESYNC_CONNECTORS_*` variable of `environment`
    /// taking precedence, field by field: what `livesync dev` configures its connectors with,
    /// and so what its fake platform API must check signatures against and replay must sign with.
    public static func development(overriddenBy environment: [String: String]) -> PlatformCredentials {
        var c = PlatformCredentials.development
        func take(_ key: String, _ field: WritableKeyPath<PlatformCredentials, String>) {
            if let value = environment["LIVESYNC_CONNECTORS_\(key)"], !value.isEmpty { c[keyPath: field] = value }
        }
        take("DOUYIN_APP_KEY", \.douyinAppKey)
        take("DOUYIN_APP_SECRET", \.douyinAppSecret)
        take("KUAISHOU_APP_KEY", \.kuaishouAppKey)
        take("KUAISHOU_SIGN_SECRET", \.kuaishouSignSecret)
        take("KUAISHOU_MESSAGE_SECRET", \.kuaishouMessageSecret)
        take("WECHAT_TOKEN", \.wechatToken)
        take("WECHAT_ENCODING_AES_KEY", \.wechatEncodingAESKey)
        take("WECHAT_APP_ID", \.wechatAppID)
        take("TIKTOK_APP_KEY", \.tiktokAppKey)
        take("TIKTOK_APP_SECRET", \.tiktokAppSecret)
        take("POLL_JD_APP_KEY", \.jdAppKey)
        take("POLL_JD_APP_SECRET", \.jdAppSecret)
        take("POLL_PINDUODUO_APP_KEY", \.pinduoduoClientID)
        take("POLL_PINDUODUO_APP_SECRET", \.pinduoduoClientSecret)
        return c
    }
}
