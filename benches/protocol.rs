//! Per-message protocol cost: verify + decrypt + parse + reply-render (+ encrypt), in plain and
//! safe mode, and each step alone. Run `cargo bench --bench protocol`; figures in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use huixin::wechat::signature::sign;
use huixin::wechat::{CallbackQuery, Message, Mode, MsgCrypt, Protocol, Reply, xml};

const TOKEN: &str = "benchToken";
const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const APP_ID: &str = "wx49f0ab532d5d035a";
const NOW: i64 = 1_700_000_000;

const TEXT: &str = "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>\n\
<FromUserName><![CDATA[oBenchUser0123456789abcdefgh]]></FromUserName>\n\
<CreateTime>1700000000</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n\
<Content><![CDATA[deploy status 部署状态]]></Content>\n<MsgId>23456789012345678</MsgId>\n</xml>";

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{rel}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn query(encrypt: Option<&str>) -> CallbackQuery {
    let (ts, nonce) = ("1700000000", "1234567890");
    CallbackQuery {
        signature: Some(sign(&[TOKEN, ts, nonce])),
        timestamp: Some(ts.into()),
        nonce: Some(nonce.into()),
        echostr: None,
        openid: Some("oBenchUser0123456789abcdefgh".into()),
        encrypt_type: encrypt.map(|_| "aes".into()),
        msg_signature: encrypt.map(|e| sign(&[TOKEN, ts, nonce, e])),
    }
}

/// The whole exchange for one message: what the server does per request, minus HTTP.
fn exchange(protocol: &Protocol, q: &CallbackQuery, body: &[u8]) -> usize {
    let inbound = protocol.receive(q, body, NOW).expect("valid");
    let reply = match inbound.message.content() {
        Some(text) => Reply::text(text),
        None => Reply::Success,
    };
    protocol.seal(&inbound, &reply, q, NOW).body.len()
}

fn bench_exchange(c: &mut Criterion) {
    let crypt = MsgCrypt::new(TOKEN, KEY, APP_ID, &[]).unwrap();
    let plain = Protocol::plain(TOKEN, 300);
    let safe = Protocol::with_crypt(Mode::Safe, crypt.clone(), TOKEN, 300);
    let encrypt = crypt.encrypt(TEXT.as_bytes(), APP_ID);
    let envelope = format!(
        "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    );

    let mut g = c.benchmark_group("exchange");
    g.throughput(Throughput::Elements(1));
    let q = query(None);
    g.bench_function("plain_text_message", |b| {
        b.iter(|| exchange(&plain, black_box(&q), black_box(TEXT.as_bytes())))
    });
    let q = query(Some(&encrypt));
    g.bench_function("safe_text_message", |b| {
        b.iter(|| exchange(&safe, black_box(&q), black_box(envelope.as_bytes())))
    });
    let mass = fixture("messages/event_masssendjobfinish.xml");
    let q = query(None);
    g.bench_function("plain_masssendjobfinish_event", |b| {
        b.iter(|| exchange(&plain, black_box(&q), black_box(&mass)))
    });
    g.finish();
}

fn bench_steps(c: &mut Criterion) {
    let crypt = MsgCrypt::new(TOKEN, KEY, APP_ID, &[]).unwrap();
    let encrypt = crypt.encrypt(TEXT.as_bytes(), APP_ID);
    let msg = Message::parse(TEXT.as_bytes()).unwrap();
    let reply = Reply::text("deploy status 部署状态");

    let mut g = c.benchmark_group("step");
    g.bench_function("signature_sha1", |b| {
        b.iter(|| sign(black_box(&[TOKEN, "1700000000", "1234567890"])))
    });
    g.bench_function("decrypt", |b| {
        b.iter(|| crypt.decrypt(black_box(&encrypt)).unwrap())
    });
    g.bench_function("encrypt", |b| {
        b.iter(|| crypt.encrypt(black_box(TEXT.as_bytes()), APP_ID))
    });
    g.bench_function("xml_tree", |b| {
        b.iter(|| xml::parse(black_box(TEXT.as_bytes())).unwrap())
    });
    g.bench_function("parse_typed", |b| {
        b.iter(|| Message::parse(black_box(TEXT.as_bytes())).unwrap())
    });
    g.bench_function("render_text_reply", |b| {
        b.iter(|| reply.render_for(black_box(&msg), NOW))
    });
    g.finish();
}

criterion_group!(benches, bench_exchange, bench_steps);
criterion_main!(benches);
