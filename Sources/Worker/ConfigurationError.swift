/// A configuration value that cannot be used; the message names the key and what to do.
public struct ConfigurationError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
