import Connectors
import Crypto
import Foundation
import Ingest
import Model
import Testing

/// Each platform's signature and encryption against the worked examples its documentation or
/// official sample code publishes, and against the exact rules where no example is published.
@Suite struct WeChatVectorTests {
    // WeChat's official WXBizMsgCrypt sample (Sample.py/Sample.java in the downloadable crypto demo).
    let token = "spamtest"
    let aesKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    let appID = "wx2c2769f8efd9abc2"
    let timestamp = "1409735669"
    let nonce = "1320562132"
    let msgSignature = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
    let encrypted = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="

    @Test func officialSampleMsgSignatureMatches() {
        #expect(WeChatMessageCrypto.signature([token, timestamp, nonce, encrypted]) == msgSignature)
    }

    @Test func officialSampleDecryptsToTheSampleMessageForItsAppID() throws {
        let crypto = try WeChatMessageCrypto(token: token, encodingAESKey: aesKey, appID: appID)
        let plain = String(decoding: try crypto.decrypt(encrypted), as: UTF8.self)
        #expect(plain.hasPrefix("<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>"))
        #expect(plain.contains("<Content><![CDATA[abcdteT]]></Content>"))
        #expect(plain.contains("6054768590064713728"))
    }

    @Test func officialSampleIsRefusedForAnotherAppID() throws {
        let crypto = try WeChatMessageCrypto(token: token, encodingAESKey: aesKey, appID: "wx0000000000000000")
        #expect(throws: ConnectorError.self) { try crypto.decrypt(encrypted) }
    }

    @Test func channelsShopURLVerificationExampleFromTheMessagePushDoc() throws {
        // doc/channels/dev_before/base/message_push: Token AAAAA, the GET that must echo echostr.
        #expect(WeChatMessageCrypto.signature(["AAAAA", "1714036504", "1514711492"]) == "f464b24fc39322e44b38aa78f5edd27bd1441696")
        let connector = WeChatChannelsConnector(crypto: try WeChatMessageCrypto(token: "AAAAA", encodingAESKey: aesKey, appID: appID), shopID: "s")
        let request = WebhookRequest(method: "GET", query: ["signature": "f464b24fc39322e44b38aa78f5edd27bd1441696", "echostr": "4375120948345356249",
                                                            "timestamp": "1714036504", "nonce": "1514711492"])
        guard case .handshake(let reply) = try connector.parse(request) else { Issue.record("not a handshake"); return }
        #expect(reply.body == "4375120948345356249")
        var bad = request
        bad.query["signature"] = "0" + String(request.query["signature"]!.dropFirst())
        #expect(throws: ConnectorError.self) { try connector.parse(bad) }
    }

    @Test func plaintextModeExampleFromTheEncryptionDoc() throws {
        // doc/…/push/encryption: plaintext mode, Token AAAAA, timestamp 1714037059, nonce 486452656.
        #expect(WeChatMessageCrypto.signature(["AAAAA", "1714037059", "486452656"]) == "899cf89e464efb63f54ddac96b0a0a235f53aa78")
    }

    @Test func encryptionRoundTripsWithThirtyTwoBytePaddingAndTheDocumentedLayout() throws {
        let crypto = try WeChatMessageCrypto(token: token, encodingAESKey: aesKey, appID: appID)
        for size in [0, 1, 11, 12, 13, 31, 32, 33, 500] {
            let msg = (0..<size).map { UInt8($0 % 251) }
            let enc = crypto.encrypt(msg, random: Array(repeating: 7, count: 16))
            let raw = try #require(Data(base64Encoded: enc))
            #expect(raw.count % 32 == 0)
            #expect(try crypto.decrypt(enc) == msg)
        }
    }
}

@Suite struct SignatureRuleTests {
    @Test func douyinEventSignIsMD5OfAppKeyBodyAppSecret() {
        let body = Array(#"[{"tag":"101","msg_id":"1","data":"{}"}]"#.utf8)
        // md5("k" + body + "s") computed independently with Python's hashlib.
        #expect(DouyinConnector.sign(body: body, appKey: "k", appSecret: "s") == Digest.md5("k" + String(decoding: body, as: UTF8.self) + "s"))
        #expect(DouyinConnector.sign(body: Array("".utf8), appKey: "", appSecret: "") == "d41d8cd98f00b204e9800998ecf8427e")
    }

    @Test func tiktokAuthorizationIsHMACOfAppKeyPlusBody() {
        // RFC 4231 test case 2: HMAC-SHA256(key "Jefe", "what do ya want for nothing?").
        #expect(TikTokShopConnector.sign(body: Array(" ya want for nothing?".utf8), appKey: "what do", appSecret: "Jefe")
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func kuaishouRequestSignSortsParamsAndAppendsSignSecret() {
        let sign = APISigning.kuaishou(params: ["method": "open.order.detail", "appkey": "a", "sign": "x", "version": "1"], signSecret: "S")
        #expect(sign == Digest.md5("appkey=a&method=open.order.detail&version=1&signSecret=S"))
    }

    @Test func douyinRequestSignWrapsTheCanonicalStringInTheSecret() {
        let sign = APISigning.douyin(appKey: "k", appSecret: "S", method: "order.orderDetail", paramJSON: #"{"shop_order_id":"1"}"#, timestamp: "2026-01-01 00:00:00")
        #expect(sign == Digest.md5(#"Sapp_keykmethodorder.orderDetailparam_json{"shop_order_id":"1"}timestamp2026-01-01 00:00:00v2S"#))
    }
}

enum Digest {
    static func md5(_ s: String) -> String { Insecure.MD5.hash(data: Data(s.utf8)).map { String(format: "%02x", $0) }.joined() }
}
