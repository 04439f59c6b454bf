import Foundation
import Ingest
import Model
import Testing

let shop = ShopCredentials(secret: "s3cret", defaultWarehouse: "main")

func body(_ json: String) -> [UInt8] { Array(json.utf8) }

let validOrder = """
{"shop_id":"shop-1","order_id":"A100","currency":"CNY","buyer":{"name":"张伟","phone":"13812341234","address":"杭州"},
 "lines":[{"sku":"SKU-1","quantity":2,"unit_price_fen":1990},{"sku":"SKU-2","quantity":1,"unit_price_fen":500,"warehouse":"east"}]}
"""

@Test func validOrderIsNormalisedIntoCanonicalLines() throws {
    let order = try GenericWebhook.order(from: body(validOrder), shop: shop, now: 1_000)
    #expect(order.orderID == "generic:shop-1:A100")
    #expect(order.totalFen == 2 * 1990 + 500)
    #expect(order.lines.map(\.sku) == ["SKU-1", "SKU-2"])
    #expect(order.lines.map(\.warehouse) == ["main", "east"])
    #expect(order.lines.map(\.eventID) == ["generic:shop-1:A100:1", "generic:shop-1:A100:2"])
    #expect(order.lines.allSatisfy { $0.lineCount == 2 && $0.ingestedAtUs == 1_000 })
}

@Test(arguments: [
    (#"{"shop_id":"shop-1","order_id":"A1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[{"sku":"S","quantity":0,"unit_price_fen":1}]}"#, "lines[0].quantity"),
    (#"{"shop_id":"shop-1","order_id":"A1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[{"sku":"S","quantity":-3,"unit_price_fen":1}]}"#, "lines[0].quantity"),
    (#"{"shop_id":"shop-1","order_id":"A1","currency":"XXX","buyer":{"name":"a","phone":"1","address":"x"},"lines":[{"sku":"S","quantity":1,"unit_price_fen":1}]}"#, "currency"),
    (#"{"shop_id":"shop-1","order_id":"A1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[{"quantity":1,"unit_price_fen":1}]}"#, "lines[0].sku"),
    (#"{"shop_id":"shop-1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[]}"#, "order_id"),
    (#"{"shop_id":"shop-1","order_id":"A1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[]}"#, "lines"),
    (#"{"shop_id":"shop-1","order_id":"A1","currency":"CNY","buyer":{"name":"a","address":"x"},"lines":[{"sku":"S","quantity":1,"unit_price_fen":1}]}"#, "buyer.phone"),
    (#"{"shop_id":"shop-1","order_id":"A1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[{"sku":"S","quantity":"2","unit_price_fen":1}]}"#, "lines[0].quantity"),
])
func invalidOrderIsRefusedNamingTheField(json: String, field: String) {
    #expect {
        _ = try GenericWebhook.order(from: body(json), shop: shop, now: 0)
    } throws: { error in
        guard case .invalidField(let f, _) = error as? IngestError else { return false }
        return f == field
    }
}

@Test func malformedJSONIsRefusedAs400() {
    #expect(throws: IngestError.self) { _ = try GenericWebhook.order(from: body("{\"shop_id\": "), shop: shop, now: 0) }
    do { _ = try GenericWebhook.order(from: body("not json"), shop: shop, now: 0) } catch { #expect(error.status == 400) }
    // A fractional quantity is refused too (Foundation's decoder reports it without a field path).
    let fractional = #"{"shop_id":"shop-1","order_id":"A1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[{"sku":"S","quantity":1.5,"unit_price_fen":1}]}"#
    do { _ = try GenericWebhook.order(from: body(fractional), shop: shop, now: 0); Issue.record("accepted 1.5 units") } catch { #expect(error.status == 400) }
}

@Test func signatureIsHMACSHA256OfTheRawBody() {
    let b = body(validOrder)
    let header = GenericWebhook.sign(b, secret: "s3cret")
    #expect(header.hasPrefix("sha256=") && header.count == 7 + 64)
    #expect(GenericWebhook.verify(b, header: header, secret: "s3cret"))
    #expect(!GenericWebhook.verify(b, header: header, secret: "other"))
    #expect(!GenericWebhook.verify(b + [32], header: header, secret: "s3cret"))
    #expect(!GenericWebhook.verify(b, header: nil, secret: "s3cret"))
    #expect(!GenericWebhook.verify(b, header: "sha256=zz", secret: "s3cret"))
}

@Test func knownHMACVector() {
    // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
    #expect(GenericWebhook.sign(Array("what do ya want for nothing?".utf8), secret: "Jefe")
        == "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
}

@Test func shopListParsesSecretsAndWarehouses() throws {
    let shops = try ShopCredentials.parseList("a=x1;b=y2@east")
    #expect(shops["a"] == ShopCredentials(secret: "x1", defaultWarehouse: "main"))
    #expect(shops["b"] == ShopCredentials(secret: "y2", defaultWarehouse: "east"))
    #expect(throws: IngestError.self) { _ = try ShopCredentials.parseList("broken") }
}

@Test func errorBodiesAreJSONNamingTheField() throws {
    let e = IngestError.invalidField(field: "lines[0].quantity", reason: "must be greater than 0")
    let obj = try JSONSerialization.jsonObject(with: Data(e.jsonBody.utf8)) as? [String: String]
    #expect(obj?["field"] == "lines[0].quantity")
    #expect(obj?["error"] == "invalid_field")
    #expect(e.status == 400)
    #expect(IngestError.badSignature.status == 401)
}
