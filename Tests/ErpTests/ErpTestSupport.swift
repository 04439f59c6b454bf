import ErpAdapters
import Testing

/// The `ErpError` a call throws (an issue if it throws anything else; nil if it does not throw).
func expectError(_ call: () async throws -> Void) async -> ErpError? {
    do { try await call() } catch let error as ErpError { return error } catch { Issue.record("not an ErpError: \(error)") }
    return nil
}

/// The ERP's refusal of one document in a batch result, if it refused it.
func refusal(_ result: Result<ErpDocument, ErpError>?) -> ErpError? {
    if case .failure(let e)? = result { return e }
    return nil
}
