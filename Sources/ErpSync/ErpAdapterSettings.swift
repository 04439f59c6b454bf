import Bootstrap
import ErpAdapters
import Foundation
import Worker

/// Builds the configured adapter from `erp.<kind>.*` settings.
public enum ErpAdapterSettings {
    public static let kinds = ["tryton", "kingdee", "yonyou", "jushuitan", "odoo", "webhook"]

    public static func adapter(kind: String, settings: LiveSyncConfig) throws -> any ErpAdapter {
        func required(_ key: String) throws -> String {
            guard let v = settings.optionalString("erp.\(kind).\(key)"), !v.isEmpty else {
                throw ConfigurationError("erp.\(kind).\(key) is required for erp.kind=\(kind) (\(LiveSyncConfig.environmentName("erp.\(kind).\(key)")))")
            }
            return v
        }
        switch kind {
        default:
            _ = try required("url")
            throw ConfigurationError("erp.kind=\(kind) has no adapter in this build")
        }
    }
}
