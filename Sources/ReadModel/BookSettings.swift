import Bootstrap
import Worker

extension LiveSyncConfig {
    /// The read model's API server: `book.host` (default 127.0.0.1), `book.port` (default 0: any
    /// free port), `book.addressFile` (where to write its URL once listening; default none).
    public var bookServer: BookServerConfiguration {
        get throws {
            BookServerConfiguration(host: string("book.host", default: "127.0.0.1"), port: try int("book.port", default: 0),
                                    addressFile: optionalString("book.addressFile"))
        }
    }

    /// The read model views ask: `book.url` (no default: a view that needs the book refuses to
    /// start without it, or with a value that is not an http(s) URL, naming the setting).
    public var bookClient: BookClient {
        get throws {
            guard let url = optionalString("book.url"), !url.isEmpty else {
                throw ConfigurationError("book.url (\(LiveSyncConfig.environmentName("book.url"))) is not set: point it at a livesync-book instance, e.g. http://book:8090")
            }
            guard BookClient.isHTTPURL(url) else {
                throw ConfigurationError("book.url (\(LiveSyncConfig.environmentName("book.url"))) '\(url)' is not an http(s) URL with a host, e.g. http://book:8090")
            }
            return BookClient(baseURL: url)
        }
    }

    /// `book.url` when set: views that can run without the book (they leave its figures out).
    public var optionalBookClient: BookClient? {
        optionalString("book.url").flatMap { $0.isEmpty ? nil : BookClient(baseURL: $0) }
    }
}
