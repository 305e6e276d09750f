//! Property tests: arbitrary input never panics the parser, the decryptor or the whole
//! receive path; encryption and reply rendering round-trip.

use aes::cipher::{BlockModeEncrypt, KeyIvInit, block_padding::NoPadding};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use huixin::wechat::crypto::{MsgCrypt, decode_aes_key};
use huixin::wechat::reply::{MAX_TEXT_BYTES, Reply};
use huixin::wechat::signature::sign;
use huixin::wechat::{CallbackQuery, Message, Mode, Protocol};
use proptest::prelude::*;

const TOKEN: &str = "propToken";
const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const APP_ID: &str = "wx49f0ab532d5d035a";

fn crypt() -> MsgCrypt {
    MsgCrypt::new(TOKEN, KEY, APP_ID, &[]).unwrap()
}

/// Strings assembled from XML-ish pieces: tags WeChat uses, CDATA, entities, DTDs, junk.
fn xmlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("<xml>".to_owned()),
        Just("</xml>".to_owned()),
        Just("<ToUserName>gh</ToUserName>".to_owned()),
        Just("<FromUserName>o</FromUserName>".to_owned()),
        Just("<CreateTime>".to_owned()),
        Just("</CreateTime>".to_owned()),
        Just("<MsgType>".to_owned()),
        Just("</MsgType>".to_owned()),
        Just("text".to_owned()),
        Just("event".to_owned()),
        Just("location".to_owned()),
        Just("<Event>".to_owned()),
        Just("</Event>".to_owned()),
        Just("subscribe".to_owned()),
        Just("MASSSENDJOBFINISH".to_owned()),
        Just("<MsgId>".to_owned()),
        Just("</MsgId>".to_owned()),
        Just("<Content>".to_owned()),
        Just("</Content>".to_owned()),
        Just("<Location_X>".to_owned()),
        Just("</Location_X>".to_owned()),
        Just("<List><TemplateId>t</TemplateId></List>".to_owned()),
        Just("<item>".to_owned()),
        Just("</item>".to_owned()),
        Just("<![CDATA[".to_owned()),
        Just("]]>".to_owned()),
        Just("&amp;".to_owned()),
        Just("&#x2;".to_owned()),
        Just("&#0;".to_owned()),
        Just("&bogus;".to_owned()),
        Just("<!DOCTYPE x [<!ENTITY e \"e\">]>".to_owned()),
        Just("<?xml version=\"1.0\"?>".to_owned()),
        Just("<!-- c -->".to_owned()),
        Just("<a/>".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("-1".to_owned()),
        Just("NaN".to_owned()),
        "[0-9]{1,22}",
        "\\PC{0,8}",
        "[<>&;/!\\[\\]]{1,3}",
    ];
    prop::collection::vec(piece, 0..48).prop_map(|v| v.concat())
}

/// Strings built from the characters that break CDATA: `]`, `>`, forbidden controls.
fn cdata_hazards() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("]"),
        Just("]]"),
        Just(">"),
        Just("]]>"),
        Just("\u{2}"),
        Just("\u{1d}"),
        Just("\u{fffe}"),
        Just("a"),
        Just(" "),
        Just("回"),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

/// Encrypts an arbitrary block-aligned plaintext with the account key, no framing or padding:
/// exercises every branch after decryption.
fn raw_encrypt(mut plain: Vec<u8>) -> String {
    let key = decode_aes_key(KEY).unwrap();
    let len = plain.len();
    let enc = cbc::Encryptor::<aes::Aes256>::new_from_slices(&key, &key[..16]).unwrap();
    let ct = enc
        .encrypt_padded::<NoPadding>(&mut plain, len)
        .unwrap()
        .to_vec();
    B64.encode(ct)
}

fn signed_query(encrypt: Option<&str>) -> CallbackQuery {
    let (ts, nonce) = ("1700000000", "42");
    CallbackQuery {
        signature: Some(sign(&[TOKEN, ts, nonce])),
        timestamp: Some(ts.into()),
        nonce: Some(nonce.into()),
        echostr: None,
        openid: Some("o".into()),
        encrypt_type: encrypt.map(|_| "aes".into()),
        msg_signature: encrypt.map(|e| sign(&[TOKEN, ts, nonce, e])),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = Message::parse(&bytes);
    }

    #[test]
    fn parser_never_panics_on_xmlish_input(s in xmlish()) {
        if let Ok(msg) = Message::parse(s.as_bytes()) {
            // Whatever parsed can be answered.
            let _ = Reply::text("x").render_for(&msg, 0);
        }
    }

    #[test]
    fn decryptor_never_panics_on_text(s in "\\PC{0,256}") {
        let _ = crypt().decrypt(&s);
    }

    #[test]
    fn decryptor_never_panics_on_ciphertext(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = crypt().decrypt(&B64.encode(&bytes));
    }

    #[test]
    fn decryptor_never_panics_on_any_plaintext(blocks in prop::collection::vec(any::<[u8; 16]>(), 1..24)) {
        let _ = crypt().decrypt(&raw_encrypt(blocks.concat()));
    }

    #[test]
    fn decryptor_never_panics_on_plausible_frames(
        len_prefix in any::<u32>(),
        body in prop::collection::vec(any::<u8>(), 0..96),
        pad in 0u8..=40,
    ) {
        let mut plain = b"0123456789abcdef".to_vec();
        plain.extend_from_slice(&len_prefix.to_be_bytes());
        plain.extend_from_slice(&body);
        let target = plain.len().div_ceil(16) * 16 + 16;
        plain.resize(target, pad);
        let _ = crypt().decrypt(&raw_encrypt(plain));
    }

    #[test]
    fn encryption_round_trips(text in "\\PC{0,1400}") {
        prop_assume!(text.len() <= 4000);
        let c = crypt();
        let encrypt = c.encrypt(text.as_bytes(), APP_ID);
        prop_assert_eq!(B64.decode(&encrypt).unwrap().len() % 32, 0);
        let decrypted = c.decrypt(&encrypt).unwrap();
        prop_assert_eq!(decrypted.xml, text.as_bytes());
    }

    #[test]
    fn text_replies_round_trip(content in prop_oneof![any::<String>(), cdata_hazards()]) {
        // Characters XML forbids are dropped; over-long text is cut on a char boundary.
        let legal: String = content
            .chars()
            .filter(|&c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..))
            .collect();
        let rendered = Reply::text(content.clone()).render("o", "gh", 1, 8);
        match rendered.xml {
            None => prop_assert!(legal.trim().is_empty()),
            Some(xml) => {
                // WeChat's own reading refuses an empty text, so this also proves non-empty.
                let parsed = Reply::parse(&xml).unwrap();
                let Reply::Text { content: back } = parsed.reply else {
                    panic!("text expected");
                };
                prop_assert!(back.len() <= MAX_TEXT_BYTES);
                prop_assert!(legal.starts_with(&back), "{:?} vs {:?}", legal, back);
            }
        }
    }

    #[test]
    fn receive_never_panics_in_any_mode(body in prop::collection::vec(any::<u8>(), 0..512), s in xmlish()) {
        let plain = Protocol::plain(TOKEN, 0);
        let _ = plain.receive(&signed_query(None), &body, 1_700_000_000);
        let _ = plain.receive(&signed_query(None), s.as_bytes(), 1_700_000_000);
        for mode in [Mode::Compatible, Mode::Safe] {
            let protocol = Protocol::with_crypt(mode, crypt(), TOKEN, 0);
            let encrypt = crypt().encrypt(s.as_bytes(), APP_ID);
            let envelope = format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
            if let Ok(inbound) = protocol.receive(&signed_query(Some(&encrypt)), envelope.as_bytes(), 1_700_000_000) {
                let _ = protocol.seal(&inbound, &Reply::text("ok"), &signed_query(Some(&encrypt)), 1);
            }
            let _ = protocol.receive(&signed_query(Some("x")), &body, 1_700_000_000);
        }
    }
}
