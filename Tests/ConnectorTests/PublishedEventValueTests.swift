import Connectors
import Foundation
import Model
import Testing

/// The event numbers and status names each push connector acts on, fed to the connector exactly
/// as the platform publishes them (tags, enums and example bodies cited in docs/connectors.md,
/// "Verified against"), signed or encrypted as the platform does.
@Suite struct PublishedEventValueTests {
    func events(_ connector: some WebhookConnector, _ request: WebhookRequest) throws -> [PlatformEvent] {
        guard case .events(let events) = try connector.parse(request) else {
            Issue.record("expected events, got a handshake")
            return []
        }
        return events
    }

    // MARK: Douyin shop

    let douyin = DouyinConnector(appKey: "7000000000000000001", appSecret: "dy-secret")

    func douyinPush(_ messages: [[String: String]]) -> WebhookRequest {
        let body = Array(String(decoding: try! JSONSerialization.data(withJSONObject: messages), as: UTF8.self).utf8)
        return WebhookRequest(headers: ["app-id": douyin.appKey, "event-sign": DouyinConnector.sign(body: body, appKey: douyin.appKey, appSecret: douyin.appSecret)],
                              body: body)
    }

    @Test func douyinMessageTagsMapToTheirEvents() throws {
        // Tags of the SDK's message types: 100 TradeCreate, 101 TradePaid, 102 TradeSellerShip, 105 TradeAddressChanged,
        // 106 TradeCanceled, 200 RefundCreated, 201 RefundAgreed, 203 RefundBuyerReturnGoods, 206 RefundSuccess, 207 RefundClosed.
        let expected: [(String, EventKind)] = [("100", .ignored), ("101", .paid), ("102", .ignored), ("105", .addressChanged), ("106", .cancelled),
                                               ("200", .refundRequested), ("201", .refundApproved), ("203", .returnShipped), ("206", .refundApproved),
                                               ("207", .ignored)]
        let data = #"{"p_id":4987654321012345678,"s_ids":[4987654321012345679],"shop_id":1234567,"aftersale_id":7012345678901234567,"refund_amount":1990}"#
        let got = try events(douyin, douyinPush(expected.map { ["tag": $0.0, "msg_id": "m-\($0.0)", "data": data] }))
        #expect(got.map(\.kind) == expected.map(\.1))
        let paid = try #require(got.first { $0.tag == "101" })
        #expect(paid.platformOrderID == "4987654321012345678" && paid.shopID == "1234567")
        let refund = try #require(got.first { $0.tag == "206" })
        #expect(refund.refundID == "7012345678901234567" && refund.amountFen == 1990)
    }

    @Test func douyinConsoleTestMessageWhoseDataIsATimestampIsAcknowledged() throws {
        // The message the console posts when a push URL is saved: data is a time, not JSON.
        let got = try events(douyin, douyinPush([["tag": "0", "msg_id": "0", "data": "2020-09-10T16:27:56.52842897+08:00"]]))
        #expect(got.isEmpty)
    }

    // MARK: Kuaishou shop

    func kuaishouUpdateRefund(status: Int) throws -> (KuaishouConnector, WebhookRequest) {
        let connector = try KuaishouConnector(appKey: "ks-app", messageSecret: Data(repeating: 7, count: 32).base64EncodedString())
        // Field names of the kwaishop_aftersales_updateRefund message (orderId, refundId, handlingWay, status, …).
        let info = #"{"orderId":2400012345678901,"refundId":2500012345678901,"handlingWay":1,"specialRefundType":0,"status":\#(status),"eventType":2,"updateTime":1700000000000,"sellerId":123456}"#
        let msg: [String: Any] = ["eventId": "e-\(status)", "msgId": "k-\(status)", "bizId": 2400012345678901, "userId": 123456, "openId": "o",
                                  "appKey": "ks-app", "event": "kwaishop_aftersales_updateRefund", "info": info, "createTime": 1700000000000, "test": false]
        let plain = Array(try JSONSerialization.data(withJSONObject: msg))
        return (connector, WebhookRequest(body: Array(connector.encrypt(plain).utf8)))
    }

    @Test func kuaishouRefundStatusFortyIsTheReturnOnItsWayAndSixtyTheRefundDone() throws {
        // Kuaishou's refund status enum: 10 仅退款申请, 11 退货退款申请, 20–22 平台介入, 30 回寄信息待买家更新,
        // 40 回寄信息待卖家确认, 50 退款执行中, 60 退款成功, 70 退款失败.
        let expected: [(Int, EventKind)] = [(10, .ignored), (11, .ignored), (22, .ignored), (30, .ignored), (40, .returnShipped),
                                            (50, .ignored), (60, .refundApproved), (70, .ignored)]
        for (status, kind) in expected {
            let (connector, request) = try kuaishouUpdateRefund(status: status)
            let got = try events(connector, request)
            #expect(got.map(\.kind) == [kind], "status \(status)")
            #expect(got.first?.platformOrderID == "2400012345678901")
            #expect(got.first?.refundID == "2500012345678901")
        }
    }

    @Test func kuaishouIsAcknowledgedWithResultOne() throws {
        let connector = try KuaishouConnector(appKey: "ks-app", messageSecret: Data(repeating: 7, count: 32).base64EncodedString())
        #expect(connector.acknowledgement.status == 200)
        #expect(try JSONSerialization.jsonObject(with: Data(connector.acknowledgement.body.utf8)) as? [String: Int] == ["result": 1])
    }

    // MARK: WeChat Channels shop

    func wechatExtInfoUpdate(_ connector: WeChatChannelsConnector, type: Int) -> WebhookRequest {
        // The doc's example body (decrypted), order_id a number as published.
        let body = #"{"ToUserName":"gh_*","FromUserName":"OPENID","CreateTime":1662480000,"MsgType":"event","Event":"channels_ec_order_ext_info_update","order_info":{"order_id":3705115058471208928,"type":\#(type)}}"#
        let ts = "1662480000", nonce = "\(type)"
        return WebhookRequest(query: ["timestamp": ts, "nonce": nonce, "signature": WeChatMessageCrypto.signature([connector.crypto.token, ts, nonce])],
                              body: Array(body.utf8))
    }

    @Test func wechatExtInfoUpdateTypesTwoSixteenAndNineteenAreAddressChangesTheOthersAreNot() throws {
        let crypto = try WeChatMessageCrypto(token: "tok", encodingAESKey: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", appID: "wx-app")
        let connector = WeChatChannelsConnector(crypto: crypto, shopID: "wx-shop", allowPlaintext: true)
        // 1 联盟佣金 2 商家主动地址修改或通过用户修改地址申请 3 商家备注修改 4 用户发起申请修改收货地址 7 用户催发货
        // 16 买家已同意修改，请按新地址发货 17 买家已拒绝修改 18 买家超时未确认 19 买家已主动修改地址，请按新地址发货
        let expected: [(Int, EventKind)] = [(1, .ignored), (2, .addressChanged), (3, .ignored), (4, .ignored), (7, .ignored),
                                            (16, .addressChanged), (17, .ignored), (18, .ignored), (19, .addressChanged)]
        for (type, kind) in expected {
            let got = try events(connector, wechatExtInfoUpdate(connector, type: type))
            #expect(got.map(\.kind) == [kind], "type \(type)")
            #expect(got.first?.platformOrderID == "3705115058471208928")
        }
    }

    // MARK: TikTok Shop

    let tiktok = TikTokShopConnector(appKey: "tt-app", appSecret: "tt-secret")

    func tiktokPush(_ json: String) -> WebhookRequest {
        let body = Array(json.utf8)
        return WebhookRequest(headers: ["Authorization": TikTokShopConnector.sign(body: body, appKey: tiktok.appKey, appSecret: tiktok.appSecret)], body: body)
    }

    func tiktokEvent(type: Int, data: String) throws -> PlatformEvent {
        let json = #"{"type":\#(type),"tts_notification_id":"7327112393057371910","shop_id":"7494049642642441621","timestamp":1644412885,"data":\#(data)}"#
        return try #require(try events(tiktok, tiktokPush(json)).first)
    }

    @Test func tiktokOrderCancellationAndReturnStatusesMapAsThePartnerDocsNameThem() throws {
        let order = #""order_id":"576486316948490001""#
        // Type 1: the webhook's order_status values (CANCEL, not the order API's CANCELLED).
        for (status, kind) in [("UNPAID", EventKind.ignored), ("ON_HOLD", .ignored), ("AWAITING_SHIPMENT", .paid), ("CANCEL", .cancelled),
                               ("IN_TRANSIT", .ignored), ("COMPLETED", .ignored)] {
            #expect(try tiktokEvent(type: 1, data: #"{\#(order),"order_status":"\#(status)","is_on_hold_order":false,"update_time":1644412885}"#).kind == kind, "\(status)")
        }
        // Type 11: only a completed cancellation cancels.
        for (status, kind) in [("CANCELLATION_REQUEST_PENDING", EventKind.ignored), ("CANCELLATION_REQUEST_SUCCESS", .ignored),
                               ("CANCELLATION_REQUEST_CANCELLED", .ignored), ("CANCELLATION_REQUEST_COMPLETE", .cancelled)] {
            let e = try tiktokEvent(type: 11, data: #"{\#(order),"cancellations_role":"BUYER","cancel_status":"\#(status)","cancel_id":"4035318504086604100","create_time":1627587600}"#)
            #expect(e.kind == kind, "\(status)")
            #expect(e.refundID == "4035318504086604100")
        }
        // Type 12: request pending, buyer shipped, completed; the rest are recorded as ignored.
        for (status, kind) in [("RETURN_OR_REFUND_REQUEST_PENDING", EventKind.refundRequested), ("AWAITING_BUYER_SHIP", .ignored),
                               ("BUYER_SHIPPED_ITEM", .returnShipped), ("RETURN_OR_REFUND_REQUEST_SUCCESS", .ignored),
                               ("RETURN_OR_REFUND_REQUEST_COMPLETE", .refundApproved), ("REFUND_OR_RETURN_REQUEST_REJECT", .ignored)] {
            let e = try tiktokEvent(type: 12, data: #"{\#(order),"return_role":"BUYER","return_type":"REFUND","return_status":"\#(status)","return_id":"576486316948490001","create_time":1627587600,"update_time":1644412885}"#)
            #expect(e.kind == kind, "\(status)")
        }
    }

    @Test func tiktokAddressUpdateAsTheDocExampleShowsItWithoutANotificationIDIsAcceptedAndIdentified() throws {
        let json = #"{"type":3,"shop_id":"7494049642642441621","timestamp":1644412885,"data":{"order_id":"576486316948490001","update_time":1644412885}}"#
        let got = try events(tiktok, tiktokPush(json))
        #expect(got.map(\.kind) == [.addressChanged])
        #expect(got.first?.messageID == "3:576486316948490001:1644412885")
        // The same notification redelivered carries the same id; a later update another.
        let later = #"{"type":3,"shop_id":"7494049642642441621","timestamp":1644412999,"data":{"order_id":"576486316948490001","update_time":1644412990}}"#
        #expect(try events(tiktok, tiktokPush(json)).first?.messageID == got.first?.messageID)
        #expect(try events(tiktok, tiktokPush(later)).first?.messageID == "3:576486316948490001:1644412990")
        // Nothing to identify it by at all is refused.
        #expect(throws: ConnectorError.self) { try tiktok.parse(tiktokPush(#"{"type":3,"shop_id":"7494049642642441621","data":{"order_id":"1"}}"#)) }
    }
}
