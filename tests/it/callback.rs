//! The callback endpoint end to end: the real server on port 0, a real SQLite file, WeChat
//! played by huixin's simulator in plain, compatible and safe mode.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{MODES, start, start_with};
use huixin::bot::{Context, Flow, Router, echo, filter};
use huixin::simulator::{Header, MessageSpec};
use huixin::support::clock::unix_now;
use huixin::wechat::reply::ParsedReply;
use huixin::wechat::{Article, Message, Mode, Reply};

fn spec_xml(spec: &MessageSpec) -> String {
    spec.to_xml(&Header::new("gh_test", "o_test_user")).unwrap()
}

async fn send(server: &common::TestServer, xml: &str) -> huixin::simulator::Exchange {
    server.sim.send(xml, "o_test_user").await.expect("exchange")
}

fn reply_of(exchange: &huixin::simulator::Exchange) -> &ParsedReply {
    assert_eq!(exchange.status, 200, "body: {}", exchange.body);
    exchange
        .reply
        .as_ref()
        .expect("a 200 answer parses as a reply")
}

/// A router counting how often any handler ran.
fn counting_router() -> (Router, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let router = Router::new().route(filter::any(), move |ctx: Context| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            echo::echo(&ctx)
        }
    });
    (router, count)
}

#[tokio::test]
async fn echo_in_every_mode_with_encrypted_replies() {
    for mode in MODES {
        let server = start(mode, echo::router()).await;
        let cases = [
            (
                MessageSpec::Text {
                    content: "你好, huixin ]]> <b>&amp;".into(),
                },
                Reply::text("你好, huixin ]]> <b>&amp;"),
            ),
            (
                MessageSpec::Image {
                    media_id: "img_1".into(),
                    pic_url: "http://p/x.jpg".into(),
                },
                Reply::image("img_1"),
            ),
            (
                MessageSpec::Voice {
                    media_id: "voice_1".into(),
                    format: "amr".into(),
                    recognition: None,
                },
                Reply::voice("voice_1"),
            ),
        ];
        for (spec, expected) in cases {
            let exchange = send(&server, &spec_xml(&spec)).await;
            let reply = reply_of(&exchange);
            assert_eq!(reply.reply, expected, "{mode:?} {spec:?}");
            assert_eq!(reply.to, "o_test_user", "reply goes back to the sender");
            assert_eq!(reply.from, "gh_test", "reply comes from the account");
            assert!((reply.create_time - unix_now()).abs() < 60);
            assert_eq!(exchange.encrypted, mode != Mode::Plain, "{mode:?}");
        }
        // A message the echo bot does not answer gets a bare `success`, never encrypted.
        let exchange = send(&server, &spec_xml(&MessageSpec::Unsubscribe)).await;
        assert_eq!(exchange.body, "success");
    }
}

#[tokio::test]
async fn every_fixture_message_is_answered_in_every_mode() {
    for mode in MODES {
        let (router, count) = counting_router();
        let server = start(mode, router).await;
        let fixtures = common::fixtures_in("messages");
        assert!(fixtures.len() >= 30, "expected a fixture per type");
        for (name, bytes) in &fixtures {
            let xml = String::from_utf8(bytes.clone()).unwrap();
            let exchange = send(&server, &xml).await;
            assert_eq!(exchange.status, 200, "{mode:?} {name}: {}", exchange.body);
            let msg = Message::parse(bytes).unwrap();
            let reply = reply_of(&exchange);
            match echo::echo(&Context::new(msg.clone())) {
                None => assert_eq!(reply.reply, Reply::Success, "{name}"),
                Some(expected) => {
                    assert_eq!(reply.reply, expected, "{mode:?} {name}");
                    assert_eq!(reply.to, msg.from.as_str());
                    assert_eq!(reply.from, msg.to);
                    assert_eq!(exchange.encrypted, mode != Mode::Plain);
                }
            }
        }
        assert_eq!(
            count.load(Ordering::SeqCst),
            fixtures.len(),
            "{mode:?}: one dispatch per message"
        );
    }
}

#[tokio::test]
async fn adversarial_fixtures_get_a_clear_answer() {
    for mode in MODES {
        let server = start(mode, echo::router()).await;
        for (name, bytes) in common::fixtures_in("adversarial") {
            if name == "oversized.xml" {
                continue;
            }
            // The raw bytes, invalid UTF-8 included, are sent (or encrypted) as they are.
            let prepared = server.sim.prepare(&bytes, "o_test_user");
            let response = reqwest::Client::new()
                .post(&prepared.url)
                .body(prepared.body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            if name.starts_with("bad_") {
                assert_eq!(status, 400, "{mode:?} {name} must be refused as malformed");
            } else {
                assert_eq!(status, 200, "{mode:?} {name} must be tolerated");
                let body = response.text().await.unwrap();
                // Whatever came back is something WeChat accepts.
                let (xml, _) = server.sim.open_reply(&body).expect("reply opens");
                Reply::parse(xml.as_deref().unwrap_or("success")).expect("reply parses");
            }
        }
    }
}

#[tokio::test]
async fn url_verification_echoes_only_with_a_valid_signature() {
    for mode in MODES {
        let server = start(mode, echo::router()).await;
        assert_eq!(server.sim.verify_url().await.unwrap(), (200, true));

        let client = reqwest::Client::new();
        let bad = format!(
            "{}?signature=deadbeef&timestamp={}&nonce=1&echostr=hello",
            server.url,
            unix_now()
        );
        let response = client.get(&bad).send().await.unwrap();
        assert_eq!(response.status(), 403);
        assert_ne!(response.text().await.unwrap(), "hello");

        let missing = format!("{}?echostr=hello", server.url);
        assert_eq!(client.get(&missing).send().await.unwrap().status(), 403);

        // The echo is the raw string, not JSON-quoted.
        let prepared = server.sim.prepare("", "o");
        let url = prepared
            .url
            .replace("&openid=o", "&echostr=%E5%9B%9E%E4%BF%A1+1");
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "回信 1");
    }
}

#[tokio::test]
async fn bad_missing_or_stale_signatures_are_refused_and_run_nothing() {
    let msg_sig = regex::Regex::new("msg_signature=[0-9a-f]+").unwrap();
    let msg_sig_param = regex::Regex::new("&msg_signature=[0-9a-f]+").unwrap();
    for mode in MODES {
        let (router, count) = counting_router();
        let server = start(mode, router).await;
        let xml = spec_xml(&MessageSpec::Text {
            content: "hi".into(),
        });
        let client = reqwest::Client::new();

        let prepared = server.sim.prepare(&xml, "o_test_user");
        let tampered = prepared.url.replace("signature=", "signature=0");
        let r = client
            .post(&tampered)
            .body(prepared.body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{mode:?} tampered signature");

        let r = client
            .post(&server.url)
            .body(prepared.body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{mode:?} no query at all");

        let stale = server.sim.prepare_at(
            &xml,
            "o_test_user",
            &(unix_now() - 301).to_string(),
            "12345",
        );
        let r = client
            .post(&stale.url)
            .body(stale.body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{mode:?} stale timestamp");
        let future = server.sim.prepare_at(
            &xml,
            "o_test_user",
            &(unix_now() + 301).to_string(),
            "12345",
        );
        let r = client
            .post(&future.url)
            .body(future.body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{mode:?} timestamp from the future");

        if mode != Mode::Plain {
            let wrong_msg_sig = msg_sig.replace(
                &prepared.url,
                "msg_signature=0000000000000000000000000000000000000000",
            );
            let r = client
                .post(wrong_msg_sig.as_ref())
                .body(prepared.body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{mode:?} wrong msg_signature");
            let no_msg_sig = msg_sig_param.replace(&prepared.url, "");
            let r = client
                .post(no_msg_sig.as_ref())
                .body(prepared.body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{mode:?} missing msg_signature");
        }
        assert_eq!(count.load(Ordering::SeqCst), 0, "{mode:?}: nothing ran");

        // The untouched request still works.
        let r = server.sim.send_prepared(&prepared).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }
}

#[tokio::test]
async fn skew_window_can_be_disabled() {
    let server = start_with(Mode::Safe, echo::router(), "max_clock_skew_secs = 0").await;
    let xml = spec_xml(&MessageSpec::Text {
        content: "old".into(),
    });
    let old = server
        .sim
        .prepare_at(&xml, "o_test_user", "1411525903", "461056294");
    let exchange = server.sim.send_prepared(&old).await.unwrap();
    assert_eq!(reply_of(&exchange).reply, Reply::text("old"));
}

#[tokio::test]
async fn safe_mode_refuses_plaintext_and_compatible_mode_accepts_it() {
    let xml = spec_xml(&MessageSpec::Text {
        content: "plain".into(),
    });
    let client = reqwest::Client::new();

    let safe = start(Mode::Safe, echo::router()).await;
    let plain_sim = common::simulator(&safe.url, Mode::Plain, common::APP_ID);
    let prepared = plain_sim.prepare(&xml, "o_test_user");
    let r = client
        .post(&prepared.url)
        .body(prepared.body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Safe mode with encrypt_type=aes but a body without <Encrypt>: malformed.
    let secure = safe.sim.prepare(&xml, "o_test_user");
    let r = client
        .post(&secure.url)
        .body(xml.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let compatible = start(Mode::Compatible, echo::router()).await;
    let plain_sim = common::simulator(&compatible.url, Mode::Plain, common::APP_ID);
    let exchange = plain_sim.send(&xml, "o_test_user").await.unwrap();
    assert_eq!(reply_of(&exchange).reply, Reply::text("plain"));
    assert!(
        !exchange.encrypted,
        "a plaintext request gets a plaintext reply"
    );
}

#[tokio::test]
async fn compatible_mode_uses_the_encrypted_part() {
    let server = start(Mode::Compatible, echo::router()).await;
    let secret = spec_xml(&MessageSpec::Text {
        content: "from the encrypted part".into(),
    });
    let prepared = server.sim.prepare(&secret, "o_test_user");
    // Swap the plaintext fields for a decoy: the server must answer the encrypted content.
    let decoy = String::from_utf8(prepared.body.clone())
        .unwrap()
        .replace("from the encrypted part", "decoy");
    assert!(decoy.contains("decoy"));
    let mut tampered = prepared.clone();
    tampered.body = decoy.into_bytes();
    let exchange = server.sim.send_prepared(&tampered).await.unwrap();
    assert_eq!(
        reply_of(&exchange).reply,
        Reply::text("from the encrypted part")
    );
}

#[tokio::test]
async fn app_id_is_checked_and_extra_ids_accepted() {
    for mode in [Mode::Compatible, Mode::Safe] {
        let server = start(mode, echo::router()).await;
        let xml = spec_xml(&MessageSpec::Text {
            content: "x".into(),
        });

        let stranger = common::simulator(&server.url, mode, "wxstranger00000000");
        let exchange = stranger.send(&xml, "o_test_user").await.unwrap();
        assert_eq!(exchange.status, 400, "{mode:?}: another account's message");

        let component = common::simulator(&server.url, mode, common::COMPONENT_APP_ID);
        let exchange = component.send(&xml, "o_test_user").await.unwrap();
        assert_eq!(reply_of(&exchange).reply, Reply::text("x"));
        // The reply is encrypted for the id the message came with.
        let inner = exchange.body.clone();
        let crypt = huixin::wechat::MsgCrypt::new(
            common::TOKEN,
            common::AES_KEY,
            common::APP_ID,
            &[common::COMPONENT_APP_ID.to_owned()],
        )
        .unwrap();
        let encrypt = huixin::wechat::xml::parse_str(&inner)
            .unwrap()
            .text_of("Encrypt")
            .unwrap()
            .to_owned();
        assert_eq!(
            crypt.decrypt(&encrypt).unwrap().app_id,
            common::COMPONENT_APP_ID
        );
    }
}

#[tokio::test]
async fn malformed_bodies_are_400_in_every_mode() {
    for mode in MODES {
        let server = start(mode, echo::router()).await;
        for body in [
            "",
            "not xml",
            "<xml><MsgType>text",
            "<xml></xml>",
            "{\"json\":true}",
        ] {
            let exchange = server.sim.send(body, "o_test_user").await.unwrap();
            assert_eq!(exchange.status, 400, "{mode:?} {body:?}");
        }
        let dtd = "<!DOCTYPE xml [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&e;</Content></xml>";
        let exchange = server.sim.send(dtd, "o_test_user").await.unwrap();
        assert_eq!(exchange.status, 400);
        assert!(
            !exchange.body.contains("root:"),
            "no entity is ever expanded"
        );
    }
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    for mode in MODES {
        let server = start(mode, echo::router()).await;
        let big = common::fixture("adversarial/oversized.xml");
        assert!(big.len() > server.config.server.body_limit);
        let exchange = server.sim.send(&big, "o_test_user").await.unwrap();
        assert_eq!(exchange.status, 413, "{mode:?}");

        // Without a Content-Length (chunked), the limit still holds.
        let prepared = server.sim.prepare(&big, "o_test_user");
        let status = post_chunked(&prepared.url, &prepared.body).await;
        assert_eq!(status, 413, "{mode:?} chunked");
    }
}

/// POSTs `body` with `Transfer-Encoding: chunked` over a raw socket; returns the status.
async fn post_chunked(url: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = reqwest::Url::parse(url).unwrap();
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {}?{} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        url.path(),
        url.query().unwrap_or_default()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(8192) {
        // The server may answer and close before taking everything: stop writing then.
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if stream.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn our_own_failures_answer_success() {
    for mode in MODES {
        let router = Router::new()
            .route(filter::content("error"), |_ctx: Context| async {
                Err::<Reply, _>(std::io::Error::other("database on fire"))
            })
            .route(filter::content("panic"), |_ctx: Context| async {
                if unix_now() > 0 {
                    panic!("handler bug");
                }
                Reply::Success
            })
            .route(filter::content("empty"), |_ctx: Context| async {
                Reply::text("")
            })
            .route(filter::any(), |_ctx: Context| async {
                Reply::text("still alive")
            });
        let server = start(mode, router).await;
        for content in ["error", "panic", "empty"] {
            let exchange = send(
                &server,
                &spec_xml(&MessageSpec::Text {
                    content: content.into(),
                }),
            )
            .await;
            assert_eq!(exchange.status, 200, "{mode:?} {content}");
            assert_eq!(exchange.body, "success", "{mode:?} {content}");
        }
        let exchange = send(
            &server,
            &spec_xml(&MessageSpec::Text {
                content: "after".into(),
            }),
        )
        .await;
        assert_eq!(reply_of(&exchange).reply, Reply::text("still alive"));
    }
}

/// Answers every message with ten news articles.
fn news_router() -> Router {
    Router::new().route(filter::any(), |_ctx: Context| async {
        Reply::news((0..10).map(|i| Article {
            title: format!("article {i}"),
            description: "d".into(),
            pic_url: "http://p".into(),
            url: format!("https://example.com/{i}"),
        }))
    })
}

#[tokio::test]
async fn news_article_limits_follow_the_message_kind() {
    for mode in MODES {
        let server = start(mode, news_router()).await;
        // One article when answering any message a user sent (WeChat's own documentation
        // lists voice too, so the limit covers every user message type)...
        for name in [
            "text.xml",
            "image.xml",
            "voice.xml",
            "video.xml",
            "shortvideo.xml",
            "location.xml",
            "link.xml",
            "miniprogrampage.xml",
        ] {
            let xml = String::from_utf8(common::fixture(&format!("messages/{name}"))).unwrap();
            let exchange = send(&server, &xml).await;
            let Reply::News(a) = &reply_of(&exchange).reply else {
                panic!("news expected")
            };
            assert_eq!(a.len(), 1, "{mode:?} {name}");
        }
        // ...and at most eight when answering an event.
        for spec in [
            MessageSpec::Click { key: "news".into() },
            MessageSpec::Subscribe { scene: None },
        ] {
            let exchange = send(&server, &spec_xml(&spec)).await;
            let Reply::News(a) = &reply_of(&exchange).reply else {
                panic!("news expected")
            };
            assert_eq!(a.len(), 8, "{mode:?} {spec:?}");
        }
    }
}

#[tokio::test]
async fn every_reply_kind_survives_encryption() {
    use huixin::wechat::Music;
    let replies = vec![
        Reply::text("t ]]> t"),
        Reply::image("m"),
        Reply::voice("v"),
        Reply::video("vid", "title", "desc"),
        Reply::Music(Music {
            title: "song".into(),
            description: "d".into(),
            music_url: "http://m".into(),
            hq_music_url: "http://hq".into(),
            thumb_media_id: "thumb".into(),
        }),
        Reply::transfer_customer_service(None),
        Reply::transfer_customer_service(Some("kf2001@gh_test".into())),
    ];
    for mode in MODES {
        let list = Arc::new(replies.clone());
        let l = list.clone();
        let router = Router::new().route(
            filter::content_regex(r"^(\d+)$").unwrap(),
            move |ctx: Context| {
                let l = l.clone();
                async move {
                    let i: usize = ctx.captures.get(1).unwrap().parse().unwrap();
                    Flow::Reply(l[i].clone())
                }
            },
        );
        let server = start(mode, router).await;
        for (i, expected) in list.iter().enumerate() {
            let exchange = send(
                &server,
                &spec_xml(&MessageSpec::Text {
                    content: i.to_string(),
                }),
            )
            .await;
            assert_eq!(&reply_of(&exchange).reply, expected, "{mode:?}");
        }
    }
}

#[tokio::test]
async fn healthz_reports_ok() {
    let server = start(Mode::Plain, echo::router()).await;
    let r = reqwest::get(format!("{}/healthz", server.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn unknown_paths_and_methods_are_client_errors() {
    let server = start(Mode::Plain, echo::router()).await;
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{}/nope", server.base))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(client.put(&server.url).send().await.unwrap().status(), 405);
    let r = client
        .post(format!("{}?signature=%ZZ&timestamp", server.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
}

#[tokio::test]
async fn control_characters_never_produce_an_empty_reply() {
    for mode in MODES {
        let server = start(mode, echo::router()).await;
        // The simulator sends the control characters raw, as WeChat does.
        let xml = spec_xml(&MessageSpec::Text {
            content: "\u{2}\u{1d}".into(),
        });
        assert!(xml.contains('\u{2}'));
        let exchange = send(&server, &xml).await;
        assert_eq!(exchange.body, "success", "{mode:?}");
        let xml = spec_xml(&MessageSpec::Text {
            content: "a\u{2}]]\u{1d}>b".into(),
        });
        let exchange = send(&server, &xml).await;
        assert_eq!(reply_of(&exchange).reply, Reply::text("a]]>b"), "{mode:?}");
    }
}

#[tokio::test]
async fn slow_or_silent_clients_are_disconnected() {
    use huixin::server::listen::Limits;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = Limits {
        header_read_timeout: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(1),
    };
    let server = common::start_limited(Mode::Plain, echo::router(), "", limits).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    for opening in [&b"POST /wechat HTTP/1.1\r\nHost: x\r\n"[..], b""] {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(opening).await.unwrap();
        let mut buf = [0u8; 64];
        // The server closes the connection: a read returns (EOF or reset) instead of hanging.
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf)).await;
        assert!(
            read.is_ok(),
            "connection with opening {opening:?} was never closed"
        );
    }
    // The server still serves.
    let exchange = send(
        &server,
        &spec_xml(&MessageSpec::Text {
            content: "ok".into(),
        }),
    )
    .await;
    assert_eq!(reply_of(&exchange).reply, Reply::text("ok"));
}

#[tokio::test]
async fn a_signature_cannot_carry_a_second_body() {
    for mode in MODES {
        let (router, count) = counting_router();
        let server = start(mode, router).await;
        let xml = spec_xml(&MessageSpec::Text {
            content: "genuine".into(),
        });
        let prepared = server.sim.prepare(&xml, "o_test_user");
        assert_eq!(
            reply_of(&server.sim.send_prepared(&prepared).await.unwrap()).reply,
            Reply::text("genuine")
        );
        // WeChat's retry: the same signed request again is answered.
        assert_eq!(
            server.sim.send_prepared(&prepared).await.unwrap().status,
            200
        );

        // The same signed URL with a forged body is refused.
        let forged_xml = spec_xml(&MessageSpec::Text {
            content: "forged".into(),
        });
        let forged = server.sim.prepare_at(
            &forged_xml,
            "o_test_user",
            &prepared.timestamp,
            &prepared.nonce,
        );
        let r = reqwest::Client::new()
            .post(&prepared.url)
            .body(forged.body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{mode:?}");
        if mode == Mode::Compatible {
            // Nor can it be downgraded to plaintext by dropping encrypt_type.
            let plain_url = prepared
                .url
                .split("&encrypt_type")
                .next()
                .unwrap()
                .to_owned();
            let r = reqwest::Client::new()
                .post(&plain_url)
                .body(forged_xml)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403);
        }
        assert_eq!(
            count.load(Ordering::SeqCst),
            2,
            "{mode:?}: only the genuine request and its retry ran"
        );
    }
}

#[tokio::test]
async fn an_encrypted_request_to_a_plain_mode_server_names_the_mistake() {
    let server = start(Mode::Plain, echo::router()).await;
    let safe_sim = common::simulator(&server.url, Mode::Safe, common::APP_ID);
    let exchange = safe_sim
        .send(
            spec_xml(&MessageSpec::Text {
                content: "x".into(),
            }),
            "o_test_user",
        )
        .await
        .unwrap();
    assert_eq!(exchange.status, 400);
    assert!(
        exchange.body.contains("mode = \"plain\""),
        "{}",
        exchange.body
    );
}

#[test]
fn debug_output_never_shows_the_token() {
    let protocol = huixin::wechat::Protocol::plain(common::TOKEN, 300);
    assert!(!format!("{protocol:?}").contains(common::TOKEN));
    let sim = common::simulator("http://127.0.0.1:1/wechat", Mode::Safe, common::APP_ID);
    assert!(!format!("{sim:?}").contains(common::TOKEN));
}

// ----- /healthz and the store's health -----

/// A server on a store the test holds too; it stops when dropped.
struct OnStore {
    base: String,
    store: huixin::store::Store,
    db: std::path::PathBuf,
    _server: common::TestServer,
}

async fn start_on_store() -> OnStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::config(Mode::Plain, dir.path(), "");
    let db = dir.path().join("huixin.db");
    let app = huixin::app::App::builder(config)
        .bot(echo::router())
        .build()
        .await
        .expect("app builds");
    let store = app.store().clone();
    let server = common::launch(app, dir).await;
    OnStore {
        base: server.base.clone(),
        store,
        db,
        _server: server,
    }
}

async fn healthz(base: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(format!("{base}/healthz"))
        .await
        .expect("healthz");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON"))
}

/// Another process's connection to `db`.
async fn raw_connection(db: &std::path::Path) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("connects")
}

#[tokio::test]
async fn healthz_says_unavailable_while_another_connection_holds_the_write_lock() {
    let s = start_on_store().await;
    assert_eq!(healthz(&s.base).await.0, 200);
    let mut other = raw_connection(&s.db).await;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("write lock");
    let (status, body) = healthz(&s.base).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["store"], "locked", "{body}");
    sqlx::query("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("released");
    assert_eq!(healthz(&s.base).await.0, 200);
}

#[tokio::test]
async fn healthz_says_unavailable_while_writes_fail_for_a_full_database() {
    let s = start_on_store().await;
    s.store.limit_pages(Some(1)).await.expect("page limit");
    let large = "x".repeat(64 * 1024);
    let write = s.store.backend().meta_get_or_insert("large", &large).await;
    assert!(write.is_err(), "the database is full");
    let (status, body) = healthz(&s.base).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["store"], "full", "{body}");
    assert!(
        body["reason"].as_str().unwrap_or_default().contains("full"),
        "{body}"
    );

    s.store.limit_pages(None).await.expect("limit lifted");
    s.store
        .backend()
        .meta_get_or_insert("large", &large)
        .await
        .expect("written once there is room");
    assert_eq!(healthz(&s.base).await.0, 200);
}

#[tokio::test]
async fn healthz_says_unavailable_for_a_corrupt_database() {
    let s = start_on_store().await;
    assert_eq!(healthz(&s.base).await.0, 200);
    // Everything in the file itself, then its header overwritten.
    let mut other = raw_connection(&s.db).await;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut other)
        .await
        .expect("checkpoint");
    drop(other);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&s.db)
            .expect("open the file");
        file.seek(SeekFrom::Start(0)).expect("seek");
        file.write_all(b"this is no database file")
            .expect("overwrite");
    }
    let (status, body) = healthz(&s.base).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["store"], "corrupt", "{body}");
}

// ----- the replay guard across requests, methods and restarts -----

/// A signed query for (timestamp, nonce), as a proxy's log would show it.
fn signed_query(timestamp: &str, nonce: &str) -> String {
    let signature = huixin::wechat::signature::sign(&[common::TOKEN, timestamp, nonce]);
    format!("signature={signature}&timestamp={timestamp}&nonce={nonce}")
}

fn text_xml(content: &str) -> String {
    spec_xml(&MessageSpec::Text {
        content: content.into(),
    })
}

async fn post_raw(url: &str, query: &str, body: String) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}?{query}"))
        .body(body)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Serves the store in `dir` until the returned sender fires; the task ends after the app's
/// graceful shutdown (which writes what the store still has queued).
async fn serve_in(
    dir: &std::path::Path,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let config = common::config(Mode::Plain, dir, "");
    let app = huixin::app::App::builder(config)
        .bot(echo::router())
        .build()
        .await
        .expect("app builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let url = format!("http://{}/wechat", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = app
            .serve(listener, async move {
                let _ = stopped.await;
            })
            .await;
    });
    (url, stop, task)
}

#[tokio::test]
async fn a_signed_verification_url_cannot_carry_a_post() {
    let server = start(Mode::Plain, echo::router()).await;
    let ts = unix_now().to_string();
    let query = signed_query(&ts, "verifynonce");
    let r = reqwest::get(format!("{}?{query}&echostr=hello", server.url))
        .await
        .expect("verification");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "hello");
    let again = reqwest::get(format!("{}?{query}&echostr=hello", server.url))
        .await
        .expect("verification again");
    assert_eq!(again.status(), 200, "verifying twice is harmless");
    assert_eq!(
        post_raw(&server.url, &query, text_xml("forged")).await,
        403,
        "the GET's signed query with a body"
    );
}

#[tokio::test]
async fn a_restart_still_refuses_a_signed_query_with_another_body() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ts = unix_now().to_string();
    let query = signed_query(&ts, "restartnonce");

    let genuine = text_xml("genuine");
    let (url, stop, task) = serve_in(dir.path()).await;
    assert_eq!(post_raw(&url, &query, genuine.clone()).await, 200);
    let _ = stop.send(());
    task.await.expect("stopped");

    let (url, stop, task) = serve_in(dir.path()).await;
    assert_eq!(
        post_raw(&url, &query, text_xml("forged")).await,
        403,
        "the pair is remembered across the restart"
    );
    assert_eq!(
        post_raw(&url, &query, genuine).await,
        200,
        "WeChat's retry of the same body still passes"
    );
    let _ = stop.send(());
    task.await.expect("stopped");
}
