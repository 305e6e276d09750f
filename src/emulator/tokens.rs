//! Access tokens, two independent families as on WeChat:
//!
//! - classic, `GET /cgi-bin/token`: every call issues a new token; the previous one keeps
//!   working for the grace window (or until its own expiry, whichever comes first);
//! - stable, `POST /cgi-bin/stable_token`: the same token while it is valid; `force_refresh`
//!   issues a new one (the old one keeps the grace window), at most 20 times a day and not
//!   within 30 s of the previous forced refresh.
//!
//! Tokens are random, never reused, and remembered after they expire (so an expired token
//! answers 42001, an unknown one 40001) until a day past their expiry.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use serde_json::{Value, json};

use super::Emulator;
use super::api::{ApiError, ApiResult, json_body, parse_query, random_string, str_field};

/// Forced stable-token refreshes allowed per day.
pub(crate) const FORCED_PER_DAY: usize = 20;
/// Least time between two forced stable-token refreshes.
pub(crate) const FORCED_SPACING: Duration = Duration::from_secs(30);
const DAY: Duration = Duration::from_secs(24 * 3600);
/// Length of an access token (WeChat's are well over 100 characters).
const TOKEN_LEN: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Classic,
    Stable,
}

#[derive(Debug, Clone)]
struct Token {
    /// Emulator time it stops working.
    expires: Duration,
}

/// Every token issued, and the current one of each family.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    all: HashMap<String, Token>,
    classic: Option<String>,
    stable: Option<String>,
    /// When forced stable refreshes happened (the last day's).
    forced: VecDeque<Duration>,
}

impl Tokens {
    /// Whether `token` may be used now.
    pub fn check(&self, token: &str, now: Duration) -> Result<(), ApiError> {
        match self.all.get(token) {
            None => Err(ApiError::new(40001)),
            Some(t) if t.expires <= now => Err(ApiError::new(42001)),
            Some(_) => Ok(()),
        }
    }

    /// Expires every token now.
    pub fn expire_all(&mut self, now: Duration) {
        for token in self.all.values_mut() {
            token.expires = token.expires.min(now);
        }
    }

    /// How many tokens are valid now.
    pub fn valid(&self, now: Duration) -> usize {
        self.all.values().filter(|t| t.expires > now).count()
    }

    /// Issues a new token of `family`, ending the previous one's life after `grace`.
    fn issue(
        &mut self,
        family: Family,
        now: Duration,
        lifetime: Duration,
        grace: Duration,
    ) -> String {
        // Forget tokens long dead, so the map stays small under a refresh storm.
        self.all.retain(|_, t| t.expires + DAY > now);
        let mut token = random_string(TOKEN_LEN, true);
        while self.all.contains_key(&token) {
            token = random_string(TOKEN_LEN, true);
        }
        self.all.insert(
            token.clone(),
            Token {
                expires: now + lifetime,
            },
        );
        let current = match family {
            Family::Classic => &mut self.classic,
            Family::Stable => &mut self.stable,
        };
        if let Some(old) = current.replace(token.clone())
            && let Some(old) = self.all.get_mut(&old)
        {
            old.expires = old.expires.min(now + grace);
        }
        token
    }

    /// A new classic token.
    fn classic(&mut self, now: Duration, lifetime: Duration, grace: Duration) -> String {
        self.issue(Family::Classic, now, lifetime, grace)
    }

    /// The stable token and its remaining life: the current one while valid, a new one when
    /// it expired or when `force` (within the limits).
    fn stable(
        &mut self,
        now: Duration,
        lifetime: Duration,
        grace: Duration,
        force: bool,
    ) -> Result<(String, Duration), ApiError> {
        if force {
            while self.forced.front().is_some_and(|t| *t + DAY <= now) {
                self.forced.pop_front();
            }
            if self.forced.len() >= FORCED_PER_DAY {
                return Err(ApiError::new(45009));
            }
            if self
                .forced
                .back()
                .is_some_and(|t| now < *t + FORCED_SPACING)
            {
                return Err(ApiError::new(45011));
            }
            self.forced.push_back(now);
        } else if let Some(current) = &self.stable
            && let Some(token) = self.all.get(current)
            && token.expires > now
        {
            return Ok((current.clone(), token.expires - now));
        }
        let token = self.issue(Family::Stable, now, lifetime, grace);
        Ok((token, lifetime))
    }
}

/// `expires_in` in whole seconds, rounded up so a valid token never claims 0.
fn secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).try_into().unwrap_or(u64::MAX)
}

/// `GET /cgi-bin/token?grant_type=client_credential&appid=&secret=`.
pub(crate) async fn classic(State(emu): State<Emulator>, RawQuery(q): RawQuery) -> ApiResult {
    let q: BTreeMap<String, String> = parse_query(q.as_deref());
    if q.get("grant_type").map(String::as_str) != Some("client_credential") {
        return Err(ApiError::new(40002));
    }
    emu.check_credentials(
        q.get("appid").map(String::as_str),
        q.get("secret").map(String::as_str),
    )?;
    let settings = &emu.shared.settings;
    let now = emu.now();
    let token = emu
        .lock()
        .tokens
        .classic(now, settings.token_lifetime, settings.token_grace);
    tracing::debug!("emulator: classic access token issued");
    Ok(Json(json!({
        "access_token": token,
        "expires_in": secs(settings.token_lifetime),
    })))
}

/// `POST /cgi-bin/stable_token` with `{"grant_type","appid","secret","force_refresh"}`.
pub(crate) async fn stable(State(emu): State<Emulator>, body: Bytes) -> ApiResult {
    let body = json_body(&body)?;
    if str_field(&body, "grant_type") != Some("client_credential") {
        return Err(ApiError::new(40002));
    }
    emu.check_credentials(str_field(&body, "appid"), str_field(&body, "secret"))?;
    let force = match body.get("force_refresh") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::new(47001)),
    };
    let settings = &emu.shared.settings;
    let now = emu.now();
    let (token, remaining) =
        emu.lock()
            .tokens
            .stable(now, settings.token_lifetime, settings.token_grace, force)?;
    tracing::debug!(force, "emulator: stable access token answered");
    Ok(Json(json!({
        "access_token": token,
        "expires_in": secs(remaining),
    })))
}
