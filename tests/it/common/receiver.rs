//! A webhook receiver for the tests: an HTTP server on port 0 that records every POST, checks
//! its signature the way the README tells receivers to (HMAC-SHA256 of `TIMESTAMP.BODY` with
//! the app's secret, `X-Huixin-Signature: sha256=HEX`), and answers as the test scripts it:
//! fail, hang, answer late, answer a reply.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

/// One POST received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request path.
    pub path: String,
    /// `X-Huixin-Event`.
    pub event: String,
    /// `X-Huixin-Delivery`.
    pub delivery: String,
    /// The body as JSON (`Null` when it is not).
    pub body: Value,
    /// Whether the signature matched one of the receiver's secrets.
    pub signed: bool,
}

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// This status, empty body.
    Status(u16),
    /// 200 with this JSON, after a pause.
    Json(Duration, Value),
    /// Never answers (the request hangs until the client gives up).
    Hang,
}

#[derive(Default)]
struct Inner {
    secrets: Vec<String>,
    received: Vec<Received>,
    /// Answers still to give, by path; then 200 `{}`.
    script: HashMap<String, VecDeque<Answer>>,
}

/// A running receiver; stopped on drop.
pub struct Receiver {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    inner: Arc<Mutex<Inner>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A header's value as text (empty when absent).
fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn verify(secrets: &[String], headers: &HeaderMap, body: &[u8]) -> bool {
    let timestamp = header(headers, "x-huixin-timestamp");
    let Some(signature) = header(headers, "x-huixin-signature")
        .strip_prefix("sha256=")
        .map(str::to_owned)
    else {
        return false;
    };
    secrets.iter().any(|secret| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes()) == signature
    })
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let answer = {
        let mut inner = inner.lock().unwrap();
        let signed = verify(&inner.secrets, &headers, &body);
        inner.received.push(Received {
            path: path.clone(),
            event: header(&headers, "x-huixin-event"),
            delivery: header(&headers, "x-huixin-delivery"),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            signed,
        });
        inner.script.get_mut(&path).and_then(VecDeque::pop_front)
    };
    match answer {
        None => (StatusCode::OK, "{}").into_response(),
        Some(Answer::Status(code)) => StatusCode::from_u16(code).unwrap().into_response(),
        Some(Answer::Json(pause, json)) => {
            tokio::time::sleep(pause).await;
            axum::Json(json).into_response()
        }
        Some(Answer::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}

impl Receiver {
    /// Starts a receiver on the current runtime, checking signatures against `secrets`.
    pub async fn start(secrets: &[&str]) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
            ..Inner::default()
        }));
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Self {
            base,
            inner,
            _stop: tx,
        }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Checks signatures against `secret` too.
    pub fn add_secret(&self, secret: &str) {
        self.inner.lock().unwrap().secrets.push(secret.to_owned());
    }

    /// Answers the next requests to `path` so, in order.
    pub fn script(&self, path: &str, answers: impl IntoIterator<Item = Answer>) {
        self.inner
            .lock()
            .unwrap()
            .script
            .entry(path.to_owned())
            .or_default()
            .extend(answers);
    }

    /// Forgets the answers still scripted for `path` (it answers 200 again).
    pub fn clear_script(&self, path: &str) {
        self.inner.lock().unwrap().script.remove(path);
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// What was received for `path` with event `event`.
    pub fn events(&self, path: &str, event: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path && r.event == event)
            .collect()
    }

    /// Waits (up to `timeout`) until `done` holds for what was received; what was.
    pub fn wait(&self, timeout: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let start = std::time::Instant::now();
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            if start.elapsed() > timeout {
                panic!("the receiver did not get what was expected; got {received:#?}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}
