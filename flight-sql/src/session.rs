//! Client sessions: options a client sets for itself (the default catalog and
//! schema, DataFusion settings from `SET`) without touching other clients.
//!
//! A session is found by the caller's bearer token when it has one (auth on),
//! else by the `arrow_flight_session_id` cookie, which the server hands out with
//! `set-cookie` the first time a session is needed — as the Arrow JDBC driver and
//! ADBC (with its cookie middleware) expect. Sessions end on CloseSession, after
//! `flight_sql.session_idle_secs` unused, or (least recently used first) when
//! more than `flight_sql.max_sessions` exist.

pub(crate) mod proto;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use lakehouse_common::{Clock, ErrorKind};
use rand_core::{OsRng, RngCore};
use tonic::metadata::MetadataMap;
use tonic::{Response, Status};

use crate::error::status;

/// The cookie that carries a session id, as Flight.proto suggests.
pub(crate) const SESSION_COOKIE: &str = "arrow_flight_session_id";
/// Random bytes in a session id.
const SESSION_ID_BYTES: usize = 24;

tokio::task_local! {
    /// The session reference of the call being served; set around every call by
    /// [`in_session`], so planning anywhere below finds the caller's settings.
    static CALL: Arc<CallSession>;
}

/// DataFusion option name → value, as the session set them.
pub(crate) type Settings = BTreeMap<String, String>;

/// How one call names its session.
#[derive(Debug, Default)]
struct CallSession {
    /// The bearer token or the session cookie the call carried.
    key: Option<SessionKey>,
    /// A session id made during this call, returned as a cookie.
    issued: OnceLock<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SessionKey {
    /// Token sessions exist implicitly: an unknown token has default settings.
    Token(String),
    /// A cookie names a session the server made; unknown means closed or expired.
    Cookie(String),
}

impl SessionKey {
    fn map_key(&self) -> String {
        match self {
            SessionKey::Token(token) => format!("token:{token}"),
            SessionKey::Cookie(id) => format!("cookie:{id}"),
        }
    }
}

impl CallSession {
    /// `tokens`: whether bearer tokens are checked (auth on); unchecked ones name no session.
    fn from_metadata(metadata: &MetadataMap, tokens: bool) -> Self {
        let bearer = metadata
            .get("authorization")
            .filter(|_| tokens)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| SessionKey::Token(token.trim().to_string()));
        let cookie = || {
            metadata
                .get_all("cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(name, _)| *name == SESSION_COOKIE)
                .map(|(_, id)| SessionKey::Cookie(id.to_string()))
        };
        Self {
            key: bearer.or_else(cookie),
            issued: OnceLock::new(),
        }
    }

    /// The session this call names, or one issued during it.
    fn key(&self) -> Option<SessionKey> {
        self.key.clone().or_else(|| {
            self.issued
                .get()
                .map(|id| SessionKey::Cookie(id.to_string()))
        })
    }
}

/// Runs one Flight call with its session reference in scope; a session made
/// during the call is handed to the client as a cookie on the response.
/// `tokens`: whether bearer tokens are checked, so they may name sessions.
pub(crate) async fn in_session<T>(
    metadata: &MetadataMap,
    tokens: bool,
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<Response<T>, Status> {
    let session = Arc::new(CallSession::from_metadata(metadata, tokens));
    let mut response = CALL.scope(Arc::clone(&session), call).await?;
    if let Some(id) = session.issued.get() {
        let cookie = format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly")
            .parse()
            .map_err(|_| status(ErrorKind::Internal, "session id is not ASCII"))?;
        response.metadata_mut().insert("set-cookie", cookie);
    }
    Ok(response)
}

/// How long sessions live and how many may exist.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub idle_ms: i64,
    pub max_sessions: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            idle_ms: 3_600_000,
            max_sessions: 10_000,
        }
    }
}

struct Session {
    /// Who made it: another user presenting the same reference does not get it.
    user: String,
    settings: Settings,
    last_used_ms: i64,
}

/// The live sessions of this server.
#[derive(Clone)]
pub(crate) struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
    limits: SessionLimits,
    clock: Arc<dyn Clock>,
}

impl Sessions {
    pub(crate) fn new(limits: SessionLimits, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::default(),
            limits,
            clock,
        }
    }

    /// How many sessions are live (expired ones may linger until the next new session).
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The caller's settings: empty without a session. A cookie that names no
    /// live session is an error, so a client notices its session ended.
    pub(crate) fn settings(&self, user: &str) -> Result<Settings, Status> {
        let Some(key) = current_key() else {
            return Ok(Settings::new());
        };
        let now = self.clock.now_ms();
        let mut sessions = self.lock();
        match self.live(&mut sessions, &key, user, now) {
            Some(session) => Ok(session.settings.clone()),
            None if matches!(key, SessionKey::Token(_)) => Ok(Settings::new()),
            None => Err(unknown_session()),
        }
    }

    /// Changes the caller's settings, making its session (and a cookie for it)
    /// when it has none.
    pub(crate) fn update(&self, user: &str, change: impl FnOnce(&mut Settings)) {
        let now = self.clock.now_ms();
        let key = current_key().unwrap_or_else(issue_cookie);
        let mut sessions = self.lock();
        if self.live(&mut sessions, &key, user, now).is_none() {
            self.make_room(&mut sessions, now);
            sessions.insert(
                key.map_key(),
                Session {
                    user: user.to_string(),
                    settings: Settings::new(),
                    last_used_ms: now,
                },
            );
        }
        if let Some(session) = sessions.get_mut(&key.map_key()) {
            change(&mut session.settings);
        }
    }

    /// Ends the caller's session. A token's session may have had nothing to end;
    /// a cookie that names no live session is an error, as Flight.proto asks.
    pub(crate) fn close(&self, user: &str) -> Result<(), Status> {
        let Some(key) = current_key() else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        let mut sessions = self.lock();
        if self.live(&mut sessions, &key, user, now).is_some() {
            sessions.remove(&key.map_key());
            return Ok(());
        }
        match key {
            SessionKey::Token(_) => Ok(()),
            SessionKey::Cookie(_) => Err(unknown_session()),
        }
    }

    /// The live session under `key` owned by `user`, its idle clock restarted.
    fn live<'a>(
        &self,
        sessions: &'a mut HashMap<String, Session>,
        key: &SessionKey,
        user: &str,
        now: i64,
    ) -> Option<&'a mut Session> {
        let map_key = key.map_key();
        let expired = sessions
            .get(&map_key)
            .is_some_and(|s| now.saturating_sub(s.last_used_ms) > self.limits.idle_ms);
        if expired {
            sessions.remove(&map_key);
            return None;
        }
        let session = sessions.get_mut(&map_key).filter(|s| s.user == user)?;
        session.last_used_ms = now;
        Some(session)
    }

    /// Drops idle sessions, then the least recently used while at the cap.
    fn make_room(&self, sessions: &mut HashMap<String, Session>, now: i64) {
        sessions.retain(|_, s| now.saturating_sub(s.last_used_ms) <= self.limits.idle_ms);
        while sessions.len() >= self.limits.max_sessions.max(1) {
            let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used_ms)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            sessions.remove(&oldest);
            tracing::info!(
                "dropped the least recently used session: flight_sql.max_sessions reached"
            );
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves the map usable; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn current_key() -> Option<SessionKey> {
    CALL.try_with(|call| call.key()).ok().flatten()
}

/// A fresh session id, recorded on the call so its response sets the cookie.
fn issue_cookie() -> SessionKey {
    let mut bytes = [0u8; SESSION_ID_BYTES];
    OsRng.fill_bytes(&mut bytes);
    let id = bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let id = CALL
        .try_with(|call| call.issued.get_or_init(|| id.clone()).clone())
        .unwrap_or(id);
    SessionKey::Cookie(id)
}

fn unknown_session() -> Status {
    status(
        ErrorKind::NotFound,
        format!("the session of this {SESSION_COOKIE} cookie was closed or expired (flight_sql.session_idle_secs); drop the cookie to start a new session"),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use lakehouse_common::clock::ManualClock;

    use super::*;

    fn call_with(headers: &[(&'static str, &str)]) -> Arc<CallSession> {
        let mut metadata = MetadataMap::new();
        for (name, value) in headers {
            metadata.append(*name, value.parse().unwrap());
        }
        Arc::new(CallSession::from_metadata(&metadata, true))
    }

    #[test]
    fn token_comes_before_cookie() {
        let call = call_with(&[
            ("cookie", "a=b; arrow_flight_session_id=c1"),
            ("authorization", "Bearer t1"),
        ]);
        assert_eq!(call.key(), Some(SessionKey::Token("t1".to_string())));
        let call = call_with(&[("cookie", "a=b; arrow_flight_session_id=c1")]);
        assert_eq!(call.key(), Some(SessionKey::Cookie("c1".to_string())));
        assert_eq!(call_with(&[("authorization", "Basic eDp5")]).key(), None);
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", "Bearer None".parse().unwrap());
        let unchecked = CallSession::from_metadata(&metadata, false);
        assert_eq!(unchecked.key(), None, "without auth a token proves nothing");
    }

    #[tokio::test]
    async fn sessions_expire_cap_and_close() {
        let clock = Arc::new(ManualClock::new(0));
        let sessions = Sessions::new(
            SessionLimits {
                idle_ms: 1_000,
                max_sessions: 2,
            },
            clock.clone(),
        );
        let set = |call: Arc<CallSession>, value: &'static str| {
            let sessions = sessions.clone();
            CALL.scope(call, async move {
                sessions.update("al", |s| {
                    s.insert("k".to_string(), value.to_string());
                })
            })
        };
        let get = |call: Arc<CallSession>, user: &'static str| {
            let sessions = sessions.clone();
            CALL.scope(call, async move { sessions.settings(user) })
        };
        // No reference: a cookie is issued and names the new session.
        let fresh = call_with(&[]);
        set(Arc::clone(&fresh), "1").await;
        let id = fresh.issued.get().unwrap().clone();
        let cookie = format!("{SESSION_COOKIE}={id}");
        let by_cookie = || call_with(&[("cookie", cookie.as_str())]);
        assert_eq!(get(by_cookie(), "al").await.unwrap()["k"], "1");
        assert!(
            get(by_cookie(), "bob").await.is_err(),
            "another user's session"
        );
        // Tokens need no set-up; an unknown token has defaults.
        assert!(get(call_with(&[("authorization", "Bearer t")]), "al")
            .await
            .unwrap()
            .is_empty());
        // Idle past the limit: gone.
        clock.advance_ms(1_001);
        assert!(get(by_cookie(), "al").await.is_err());
        // At the cap the least recently used goes.
        for token in ["Bearer a", "Bearer b", "Bearer c"] {
            set(call_with(&[("authorization", token)]), "x").await;
            clock.advance_ms(1);
        }
        assert_eq!(sessions.len(), 2);
        assert!(get(call_with(&[("authorization", "Bearer a")]), "al")
            .await
            .unwrap()
            .is_empty());
        let close = |call: Arc<CallSession>| {
            let sessions = sessions.clone();
            CALL.scope(call, async move { sessions.close("al") })
        };
        close(call_with(&[("authorization", "Bearer c")]))
            .await
            .unwrap();
        assert_eq!(sessions.len(), 1);
        assert!(close(by_cookie()).await.is_err(), "already gone");
    }
}
