//! WeChat's side of the callback: the emulator posts a message to the bot as WeChat does,
//! and judges the answer as WeChat would.
//!
//! One exchange ([`Conversation`]): the request is signed (and, in safe and compatible mode,
//! encrypted) with the bot's token and key, and posted; each attempt waits at most
//! [`super::Settings::reply_timeout`]. No answer in time (or no connection) → the identical
//! request again, 3 attempts in all, then the user sees the error notice. An HTTP status
//! other than 200, or a body that is neither `success`/empty nor a valid reply (addressed
//! back to the sender, encrypted when the request was, at most 1 news article for a user's
//! message) → the error notice at once. `success` or empty → nothing shown. A valid reply →
//! the user sees it, and it lands in the user's inbox as `passive`.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::http::header;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::record::CallRecord;
use super::{BotTarget, ERROR_NOTICE, Emulator, EmulatorError};
use crate::simulator::{Header, MessageSpec, Prepared, Simulator};
use crate::wechat::Reply;
use crate::wechat::reply::{MAX_ARTICLES, MAX_ARTICLES_TO_MESSAGE};

/// Attempts WeChat makes before giving up.
pub(crate) const ATTEMPTS: usize = 3;
/// Largest answer read from the bot; a longer one is refused.
const MAX_ANSWER: usize = 1024 * 1024;

/// One message delivered to the bot, and what came of it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Conversation {
    /// Each post, in order (at most 3).
    pub attempts: Vec<Attempt>,
    /// What the user saw in the end.
    pub user_saw: UserSaw,
}

/// One post of the message to the bot.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Attempt {
    /// The HTTP status; `None` when no answer came (timeout, connection error).
    pub status: Option<u16>,
    /// How long the attempt took, in milliseconds.
    pub elapsed_ms: u64,
    /// `reply`, `success`, `timeout`, `invalid` or `http_error`.
    pub outcome: String,
    /// The body answered, as received (lossy UTF-8; empty when none).
    pub body: String,
    /// Why the answer was refused, or the connection error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What the user saw.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UserSaw {
    /// A passive reply.
    Reply {
        /// The reply, as [`Reply`] JSON.
        reply: Value,
    },
    /// Nothing (`success` or an empty body).
    Nothing,
    /// WeChat's notice that the account cannot provide service.
    ErrorNotice {
        /// [`ERROR_NOTICE`].
        text: String,
    },
}

impl Conversation {
    /// The reply the user saw, if any.
    pub fn reply(&self) -> Option<Reply> {
        match &self.user_saw {
            UserSaw::Reply { reply } => serde_json::from_value(reply.clone()).ok(),
            _ => None,
        }
    }

    /// The outcome of each attempt, in order.
    pub fn outcomes(&self) -> Vec<&str> {
        self.attempts.iter().map(|a| a.outcome.as_str()).collect()
    }
}

fn error_notice() -> UserSaw {
    UserSaw::ErrorNotice {
        text: ERROR_NOTICE.to_owned(),
    }
}

/// The bot's simulator and target, or why there is none.
fn bot(emu: &Emulator) -> Result<(Simulator, BotTarget), EmulatorError> {
    match (&emu.shared.bot, &emu.shared.settings.bot) {
        (Some(Ok(sim)), Some(target)) => Ok((sim.clone(), target.clone())),
        (Some(Err(e)), _) => Err(EmulatorError::Bot(e.clone())),
        _ => Err(EmulatorError::NoBot),
    }
}

/// A message ready to post: the XML and the fields the log shows.
struct Outgoing {
    /// `FromUserName`.
    from: String,
    xml: String,
    fields: BTreeMap<String, String>,
    user_message: bool,
}

/// Builds the message from `from`; a subscribe or scan of a scene carries the newest ticket
/// created for that scene (when there is one).
fn build(
    emu: &Emulator,
    target: &BotTarget,
    from: &str,
    spec: &MessageSpec,
) -> Result<Outgoing, EmulatorError> {
    let header = Header::new(&target.account_id, from);
    let xml = match spec {
        MessageSpec::File { .. } => spec.to_xml(&header)?,
        _ => {
            let mut element = spec.to_element(&header);
            let scene = match spec {
                MessageSpec::Subscribe { scene: Some(scene) } | MessageSpec::Scan { scene } => {
                    Some(scene)
                }
                _ => None,
            };
            if let Some(scene) = scene {
                let now = emu.now();
                let ticket = emu.lock().qrcodes.ticket_for(scene, now);
                if let Some(ticket) = ticket
                    && let Some(leaf) = element.children.iter_mut().find(|c| c.name == "Ticket")
                {
                    leaf.text = ticket;
                }
            }
            element.to_xml()
        }
    };
    let root = crate::wechat::xml::parse_str(&xml).ok();
    let text = |name: &str| {
        root.as_ref()
            .and_then(|r| r.text_of(name))
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    };
    let from = text("FromUserName").unwrap_or_else(|| from.to_owned());
    let mut fields = BTreeMap::new();
    fields.insert("from".to_owned(), from.clone());
    let msg_type = text("MsgType").unwrap_or_default();
    let user_message = msg_type != "event";
    fields.insert("msg_type".to_owned(), msg_type);
    for (key, name) in [
        ("event", "Event"),
        ("event_key", "EventKey"),
        ("ticket", "Ticket"),
        ("msg_id", "MsgId"),
        ("msg_id", "MsgID"),
    ] {
        if let Some(value) = text(name) {
            fields.insert(key.to_owned(), value);
        }
    }
    let scene = match spec {
        MessageSpec::Subscribe { scene: Some(scene) } | MessageSpec::Scan { scene } => {
            Some(scene.clone())
        }
        _ => None,
    };
    if let Some(scene) = scene {
        fields.insert("scene".to_owned(), scene);
    }
    Ok(Outgoing {
        from,
        xml,
        fields,
        user_message,
    })
}

/// [`Emulator::send`]: `from` sends `spec` to the bot.
pub(crate) async fn send(
    emu: &Emulator,
    from: &str,
    spec: MessageSpec,
) -> Result<Conversation, EmulatorError> {
    let (sim, target) = bot(emu)?;
    let outgoing = build(emu, &target, from, &spec)?;
    note_inbound(emu, from, &spec);
    let conversation = exchange(emu, &sim, &target, &outgoing).await;
    if let UserSaw::Reply { reply } = &conversation.user_saw {
        let at_ms = emu.unix_ms();
        emu.lock().deliver(from, "passive", reply.clone(), at_ms);
    }
    Ok(conversation)
}

/// Posts an event about `openid` that the user did not cause (`TEMPLATESENDJOBFINISH`):
/// no interaction is noted, and a reply to it reaches nobody.
pub(crate) async fn push_event(
    emu: &Emulator,
    openid: &str,
    spec: MessageSpec,
) -> Result<Conversation, EmulatorError> {
    let (sim, target) = bot(emu)?;
    let outgoing = build(emu, &target, openid, &spec)?;
    Ok(exchange(emu, &sim, &target, &outgoing).await)
}

/// What WeChat knows once a message arrives from `from`: the user interacted now; a
/// subscribe makes them a follower (with the QR scene), an unsubscribe ends it; a user never
/// seen before is a follower (only followers can write to an account).
fn note_inbound(emu: &Emulator, from: &str, spec: &MessageSpec) {
    let now = emu.now();
    let unix_s = emu.unix_ms() / 1000;
    let mut state = emu.lock();
    let known = state.users.get(from).is_some();
    let user = state.users.entry(from);
    match spec {
        MessageSpec::Subscribe { scene } => {
            if !user.following {
                user.subscribe_time = unix_s;
            }
            user.following = true;
            user.qr_scene = scene.clone();
        }
        MessageSpec::Unsubscribe => user.following = false,
        _ if !known => {
            user.following = true;
            user.subscribe_time = unix_s;
        }
        _ => {}
    }
    user.last_interaction = Some(now);
}

/// Posts the message up to [`ATTEMPTS`] times and judges the answers; logs the exchange as
/// a `PUSH` call.
async fn exchange(
    emu: &Emulator,
    sim: &Simulator,
    target: &BotTarget,
    outgoing: &Outgoing,
) -> Conversation {
    let started = Instant::now();
    let at_ms = emu.unix_ms();
    let prepared = sim.prepare(outgoing.xml.as_bytes(), &outgoing.from);
    let conversation = converse(emu, sim, &prepared, outgoing.user_message).await;
    let path = reqwest::Url::parse(&target.callback_url)
        .map(|u| u.path().to_owned())
        .unwrap_or_default();
    let status = conversation
        .attempts
        .last()
        .and_then(|a| a.status)
        .unwrap_or(0);
    tracing::debug!(
        openid = %outgoing.from,
        outcomes = ?conversation.outcomes(),
        "emulator: message posted to the bot"
    );
    emu.lock().record(CallRecord {
        seq: 0,
        at_ms,
        method: "PUSH".into(),
        path,
        query: outgoing.fields.clone(),
        body: serde_json::to_value(&conversation).ok(),
        status,
        errcode: 0,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    });
    conversation
}

async fn converse(
    emu: &Emulator,
    sim: &Simulator,
    prepared: &Prepared,
    user_message: bool,
) -> Conversation {
    let timeout = emu.shared.settings.reply_timeout;
    let mut attempts = Vec::with_capacity(ATTEMPTS);
    for _ in 0..ATTEMPTS {
        let started = Instant::now();
        let answer = tokio::time::timeout(timeout, post(&emu.shared.client, prepared)).await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let attempt = |status, outcome: &str, body: String, detail| Attempt {
            status,
            elapsed_ms,
            outcome: outcome.to_owned(),
            body,
            detail,
        };
        let (status, body) = match answer {
            Err(_) => {
                attempts.push(attempt(None, "timeout", String::new(), None));
                continue;
            }
            Ok(Err(e)) => {
                attempts.push(attempt(
                    None,
                    "timeout",
                    String::new(),
                    Some(format!("no answer: {e}")),
                ));
                continue;
            }
            Ok(Ok(answer)) => answer,
        };
        if status != 200 {
            attempts.push(attempt(Some(status), "http_error", body, None));
            return Conversation {
                attempts,
                user_saw: error_notice(),
            };
        }
        let max_articles = if user_message {
            MAX_ARTICLES_TO_MESSAGE
        } else {
            MAX_ARTICLES
        };
        let (outcome, detail, user_saw) = match judge(sim, prepared, &body, max_articles) {
            Ok(None) => ("success", None, UserSaw::Nothing),
            Ok(Some(reply)) => (
                "reply",
                None,
                match serde_json::to_value(&reply) {
                    Ok(reply) => UserSaw::Reply { reply },
                    Err(e) => {
                        tracing::warn!(error = %e, "emulator: reply not representable");
                        error_notice()
                    }
                },
            ),
            Err(why) => ("invalid", Some(why), error_notice()),
        };
        attempts.push(attempt(Some(status), outcome, body, detail));
        return Conversation { attempts, user_saw };
    }
    Conversation {
        attempts,
        user_saw: error_notice(),
    }
}

/// One post: the status and the body (refused past [`MAX_ANSWER`]).
async fn post(
    client: &reqwest::Client,
    prepared: &Prepared,
) -> Result<(u16, String), reqwest::Error> {
    let mut response = client
        .post(&prepared.url)
        .header(header::CONTENT_TYPE, "text/xml")
        .body(prepared.body.clone())
        .send()
        .await?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER {
            body.truncate(MAX_ANSWER);
            break;
        }
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The reply in an answer WeChat would accept: `None` for `success`/empty; an error saying
/// why WeChat would show the notice instead.
fn judge(
    sim: &Simulator,
    prepared: &Prepared,
    body: &str,
    max_articles: usize,
) -> Result<Option<Reply>, String> {
    if body.len() >= MAX_ANSWER {
        return Err(format!("answer longer than {MAX_ANSWER} bytes"));
    }
    let (xml, encrypted) = sim.open_reply(body).map_err(|e| e.to_string())?;
    let Some(xml) = xml else {
        return Ok(None);
    };
    let parsed = Reply::parse(&xml).map_err(|e| format!("reply is not valid: {e}"))?;
    if parsed.reply == Reply::Success {
        return Ok(None);
    }
    if prepared.encrypted && !encrypted {
        return Err("the request was encrypted, the reply is not".into());
    }
    if parsed.to != prepared.from_user || parsed.from != prepared.to_user {
        return Err(format!(
            "reply goes from {:?} to {:?}, expected from {:?} to {:?}",
            parsed.from, parsed.to, prepared.to_user, prepared.from_user
        ));
    }
    if let Reply::News(articles) = &parsed.reply
        && articles.len() > max_articles
    {
        return Err(format!(
            "{} news articles, at most {max_articles} allowed here",
            articles.len()
        ));
    }
    Ok(Some(parsed.reply))
}
