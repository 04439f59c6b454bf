import Foundation
@testable import Ingest
import Testing

/// The one-pass reader of the generic bodies decodes exactly what `JSONDecoder` decodes, and
/// declines everything else (so `JSONDecoder` decodes it or names the field at fault).
@Suite struct PlainJSONTests {
    func canonical<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static let orders = [
        validOrder,
        #"{"shop_id":"s","order_id":"1","currency":"CNY","paid_at_ms":1700000000000,"buyer":{"name":"a","phone":"1","address":"x"},"remark":"请尽快发货","lines":[{"sku":"S","quantity":2,"unit_price_fen":0,"warehouse":"east"}]}"#,
        #"{"shop_id":"s","order_id":"1","currency":"CNY","paid_at_ms":null,"buyer":{"name":"a","phone":"1","address":"x"},"remark":null,"lines":[{"sku":"S","quantity":-2,"unit_price_fen":1,"warehouse":null}]}"#,
        #"{"lines":[],"buyer":{"address":"x","phone":"1","name":"a"},"currency":"CNY","order_id":"1","shop_id":"s"}"#,
        " \n{ \"shop_id\" : \"s\" ,\t\"order_id\":\"1\",\"currency\":\"CNY\",\"buyer\":{ },\"lines\":[ ]}\r\n",
    ]

    @Test(arguments: PlainJSONTests.orders)
    func ordersItReadsDecodeAsJSONDecoderDoes(json: String) throws {
        let body = Array(json.utf8)
        let plain = PlainJSON.order(body)
        let foundation = try? JSONDecoder().decode(GenericWebhook.OrderJSON.self, from: Data(body))
        if json.contains("\"buyer\":{ }") {
            #expect(plain == nil)  // buyer without its fields: JSONDecoder names the missing one
            return
        }
        let p = try #require(plain)
        #expect(try canonical(p) == canonical(try #require(foundation)))
    }

    @Test(arguments: [
        #"{"shop_id":"s\"q","order_id":"1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[]}"#,  // escape
        #"{"shop_id":"s","order_id":"1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[],"extra":1}"#,  // unknown key
        #"{"shop_id":"s","shop_id":"t","order_id":"1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[]}"#,  // repeated key
        #"{"order_id":"1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[]}"#,  // missing shop_id
        #"{"shop_id":null,"order_id":"1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[]}"#,  // null required
        #"{"shop_id":"s","order_id":"1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[{"sku":"S","quantity":1.5,"unit_price_fen":1}]}"#,
        #"{"shop_id":"s","order_id":"1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[{"sku":"S","quantity":1e2,"unit_price_fen":1}]}"#,
        #"{"shop_id":"s","order_id":"1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[{"sku":"S","quantity":01,"unit_price_fen":1}]}"#,
        #"{"shop_id":"s","order_id":"1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[{"sku":"S","quantity":"2","unit_price_fen":1}]}"#,
        #"{"shop_id":"s","order_id":"1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[{"sku":"S","quantity":99999999999999999999,"unit_price_fen":1}]}"#,
        #"{"shop_id":"s","order_id":"1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[]} x"#,  // trailing bytes
        #"{"shop_id":"s","order_id":"1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[],}"#,  // trailing comma
        #"[1]"#, "", "{",
    ])
    func declinesWhatItDoesNotRead(json: String) {
        #expect(PlainJSON.order(Array(json.utf8)) == nil)
    }

    @Test func declinesInvalidUTF8() {
        var body = Array(#"{"shop_id":"s","order_id":"1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[]}"#.utf8)
        body[13] = 0xFF
        #expect(PlainJSON.order(body) == nil)
    }

    @Test func refundsItReadsDecodeAsJSONDecoderDoes() throws {
        for json in [#"{"shop_id":"s","order_id":"1","refund_id":"R1","amount_fen":1990,"reason":"不想要了"}"#,
                     #"{"reason":null,"amount_fen":0,"refund_id":"R1","order_id":"1","shop_id":"s"}"#] {
            let body = Array(json.utf8)
            let p = try #require(PlainJSON.refund(body))
            #expect(try canonical(p) == canonical(try JSONDecoder().decode(GenericWebhook.RefundJSON.self, from: Data(body))))
        }
        #expect(PlainJSON.refund(Array(#"{"shop_id":"s","order_id":"1","refund_id":"R1"}"#.utf8)) == nil)
    }

    /// The replay's own bodies (JSONEncoder's output, Chinese text included) take the one-pass path.
    @Test func theReplaysBodiesAreRead() throws {
        let order = GenericWebhook.OrderJSON(shop_id: "shop-1", order_id: "690000000000000001", currency: "CNY", paid_at_ms: nil,
                                             buyer: .init(name: "张伟", phone: "13800000001", address: "浙江省杭州市余杭区文一西路1号"),
                                             remark: "请尽快发货", lines: [.init(sku: "SKU-0001", quantity: 2, unit_price_fen: 2990, warehouse: "main")])
        let body = Array(try JSONEncoder().encode(order))
        let p = try #require(PlainJSON.order(body))
        #expect(try canonical(p) == canonical(order))
    }
}
