//! Citizens' sessions after a SPID/CIE login, and the logins under way: kept by varco, in memory
//! on one node or in Redis so that any instance of a consortium serves them. The browser holds
//! only an opaque random id; Redis knows it by its SHA-256, so a copy of Redis (a dump, a
//! replica) opens no session.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use varco_core::Identity;
use varco_traffic::RedisStore;

/// What varco keeps of a citizen's login. The tokens stay here (revocation, end-session);
/// they are never logged nor sent to back-offices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The ente (codice IPA) whose login opened it: another ente's routes never accept it.
    pub tenant: String,
    /// The OP's entity id.
    pub op: String,
    pub sub: String,
    pub acr: Option<String>,
    pub fiscal_code: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub email: Option<String>,
    pub id_token: String,
    pub access_token: String,
    /// Unix seconds of the login and of the last use.
    pub created: u64,
    pub last_seen: u64,
}

impl SessionRecord {
    /// The identity routes forward (`X-Varco-*`, the identity token).
    pub fn identity(&self) -> Identity {
        let mut id = Identity {
            issuer: self.op.clone(),
            subject: self.sub.clone(),
            acr: self.acr.clone(),
            fiscal_code: self.fiscal_code.clone(),
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            email: self.email.clone(),
            ..Identity::default()
        };
        id.headers = id.header_list(&self.tenant);
        id
    }
}

/// A live session as a route sees it.
#[derive(Debug)]
pub struct Session {
    pub record: SessionRecord,
    pub identity: Arc<Identity>,
}

/// The store could not be reached (Redis down): the caller fails closed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the session store did not answer")]
pub struct StoreUnavailable;

/// How long sessions live.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub idle: u64,
    pub absolute: u64,
}

impl Lifetimes {
    /// Whether a session is still alive at `now`.
    fn alive(&self, r: &SessionRecord, now: u64) -> bool {
        self.alive_at(r.created, r.last_seen, now)
    }

    fn alive_at(&self, created: u64, last_seen: u64, now: u64) -> bool {
        now < created.saturating_add(self.absolute) && now < last_seen.saturating_add(self.idle)
    }

    /// Seconds the record may stay in the store from `now`.
    fn ttl(&self, r: &SessionRecord, now: u64) -> u64 {
        let end = r.created.saturating_add(self.absolute).min(r.last_seen.saturating_add(self.idle));
        end.saturating_sub(now).max(1)
    }
}

/// A session in memory: the record and the identity built once, the last use kept apart so a
/// request updates it without a lock.
#[derive(Debug)]
struct Held {
    session: Arc<Session>,
    last_seen: AtomicU64,
}

#[derive(Debug, Default)]
struct Memory {
    sessions: DashMap<String, Held>,
    /// Pending logins: value and expiry (unix s).
    pending: DashMap<String, (Vec<u8>, u64)>,
    writes: AtomicU64,
}

impl Memory {
    /// Drops what expired, every 1024 writes (no timer task needed).
    fn sweep(&self, now: u64, lifetimes: Lifetimes) {
        if self.writes.fetch_add(1, Ordering::Relaxed) % 1024 != 1023 {
            return;
        }
        self.pending.retain(|_, (_, exp)| *exp > now);
        self.sessions
            .retain(|_, h| lifetimes.alive_at(h.session.record.created, h.last_seen.load(Ordering::Relaxed), now));
    }
}

/// Where sessions and pending logins live.
#[derive(Debug, Clone)]
pub enum SessionStore {
    Memory(Arc<MemoryStore>),
    Redis(Arc<RedisStore>),
}

/// The in-memory store (one node).
#[derive(Debug, Default)]
pub struct MemoryStore(Memory);

/// A session id's length: 32 random bytes, base64url.
const ID_LEN: usize = 43;
/// A Redis session's last use is written back at most this often (seconds): a request does not
/// cost a write.
const TOUCH_EVERY: u64 = 60;

/// 32 random bytes from the system's CSPRNG, base64url (43 characters); empty if the OS gives
/// no randomness, which every caller refuses (`key` takes only 43 characters).
pub fn random_token() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        return String::new();
    }
    URL_SAFE_NO_PAD.encode(b)
}

/// Logins under way one node keeps at most: a flood of login starts (each kept ten minutes)
/// is refused with 503 past this, instead of growing memory without bound.
pub const MAX_PENDING: usize = 100_000;

/// Appends the SHA-256 of `s` in lower-case hex (64 characters) to `out`.
pub(crate) fn push_sha256_hex(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in ring::digest::digest(&ring::digest::SHA256, s.as_bytes()).as_ref() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
}

/// Whether `id` has the shape of a session id varco hands out.
fn well_formed(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The Redis key of a session id: the id itself is never stored there, so a copy of Redis (a
/// dump, a replica) opens no session. In memory the id is the key: a copy of the process's
/// memory holds the ids anyway, and hashing costs ~2.5k instructions per request.
fn key(tenant: &str, id: &str) -> Option<String> {
    if !well_formed(id) {
        return None;
    }
    let mut k = String::with_capacity(9 + tenant.len() + 64);
    k.push_str("session:");
    k.push_str(tenant);
    k.push(':');
    push_sha256_hex(&mut k, id);
    Some(k)
}

impl SessionStore {
    pub fn memory() -> Self {
        Self::Memory(Arc::new(MemoryStore::default()))
    }

    /// Opens a session for `record`; the id for the cookie.
    pub async fn open(&self, record: SessionRecord, l: Lifetimes) -> Result<String, StoreUnavailable> {
        let id = random_token();
        let k = key(&record.tenant, &id).ok_or(StoreUnavailable)?;
        let now = record.last_seen;
        match self {
            Self::Memory(m) => {
                m.0.sweep(now, l);
                let identity = Arc::new(record.identity());
                let held = Held { last_seen: AtomicU64::new(now), session: Arc::new(Session { record, identity }) };
                m.0.sessions.insert(id.clone(), held);
            }
            Self::Redis(r) => {
                let body = serde_json::to_vec(&record).map_err(|_| StoreUnavailable)?;
                r.put(&k, body, l.ttl(&record, now)).await.ok_or(StoreUnavailable)?;
            }
        }
        Ok(id)
    }

    /// The live session of `tenant` named by the cookie value `id`, its last use moved to `now`.
    pub async fn find(
        &self,
        tenant: &str,
        id: &str,
        l: Lifetimes,
        now: u64,
    ) -> Result<Option<Arc<Session>>, StoreUnavailable> {
        match self {
            Self::Memory(m) => {
                if !well_formed(id) {
                    return Ok(None);
                }
                let Some(h) = m.0.sessions.get(id) else { return Ok(None) };
                let r = &h.session.record;
                if r.tenant != tenant {
                    return Ok(None);
                }
                if !l.alive_at(r.created, h.last_seen.load(Ordering::Relaxed), now) {
                    drop(h);
                    m.0.sessions.remove(id);
                    return Ok(None);
                }
                h.last_seen.store(now, Ordering::Relaxed);
                Ok(Some(h.session.clone()))
            }
            Self::Redis(r) => {
                let Some(k) = key(tenant, id) else { return Ok(None) };
                let Some(body) = r.get(&k).await.ok_or(StoreUnavailable)? else { return Ok(None) };
                let Ok(mut rec) = serde_json::from_slice::<SessionRecord>(&body) else { return Ok(None) };
                if !l.alive(&rec, now) || rec.tenant != tenant {
                    let _ = r.delete(&k).await;
                    return Ok(None);
                }
                if now >= rec.last_seen + TOUCH_EVERY {
                    rec.last_seen = now;
                    if let Ok(body) = serde_json::to_vec(&rec) {
                        // A lost write shortens the session by at most TOUCH_EVERY: not worth failing for.
                        let _ = r.put(&k, body, l.ttl(&rec, now)).await;
                    }
                }
                let identity = Arc::new(rec.identity());
                Ok(Some(Arc::new(Session { record: rec, identity })))
            }
        }
    }

    /// Ends the session named by `id` (logout): what it held, for revocation at the OP.
    pub async fn close(&self, tenant: &str, id: &str) -> Result<Option<SessionRecord>, StoreUnavailable> {
        match self {
            Self::Memory(m) => {
                let own = m.0.sessions.get(id).is_some_and(|h| h.session.record.tenant == tenant);
                Ok(if own { m.0.sessions.remove(id).map(|(_, h)| h.session.record.clone()) } else { None })
            }
            Self::Redis(r) => {
                let Some(k) = key(tenant, id) else { return Ok(None) };
                let body = r.take(&k).await.ok_or(StoreUnavailable)?;
                Ok(body.and_then(|b| serde_json::from_slice(&b).ok()))
            }
        }
    }

    /// Keeps a login under way (`state` → what the callback needs) for `ttl` seconds.
    pub async fn put_pending(&self, state: &str, value: Vec<u8>, ttl: u64, now: u64) -> Result<(), StoreUnavailable> {
        let k = format!("login:{state}");
        match self {
            Self::Memory(m) => {
                m.0.sweep(now, Lifetimes { idle: u64::MAX, absolute: u64::MAX });
                if m.0.pending.len() >= MAX_PENDING {
                    m.0.pending.retain(|_, (_, exp)| *exp > now);
                    if m.0.pending.len() >= MAX_PENDING {
                        return Err(StoreUnavailable);
                    }
                }
                m.0.pending.insert(k, (value, now + ttl));
                Ok(())
            }
            Self::Redis(r) => r.put(&k, value, ttl).await.ok_or(StoreUnavailable),
        }
    }

    /// Takes the login under way for `state`: once only (a replayed callback finds nothing).
    pub async fn take_pending(&self, state: &str, now: u64) -> Result<Option<Vec<u8>>, StoreUnavailable> {
        let k = format!("login:{state}");
        match self {
            Self::Memory(m) => Ok(m.0.pending.remove(&k).filter(|(_, (_, exp))| *exp > now).map(|(_, (v, _))| v)),
            Self::Redis(r) => r.take(&k).await.ok_or(StoreUnavailable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tenant: &str, now: u64) -> SessionRecord {
        SessionRecord {
            tenant: tenant.into(),
            op: "https://op.example".into(),
            sub: "pairwise-1".into(),
            acr: Some("https://www.spid.gov.it/SpidL2".into()),
            fiscal_code: Some("RSSMRA80A01H501U".into()),
            given_name: Some("Mario".into()),
            family_name: Some("Rossi".into()),
            email: None,
            id_token: "id.token.x".into(),
            access_token: "at".into(),
            created: now,
            last_seen: now,
        }
    }

    const L: Lifetimes = Lifetimes { idle: 600, absolute: 3600 };

    #[tokio::test]
    async fn a_session_lives_while_used_and_no_longer_than_its_absolute_limit() {
        let s = SessionStore::memory();
        let id = s.open(record("c_e783", 1000), L).await.unwrap_or_default();
        assert_eq!(id.len(), ID_LEN);
        let found = s.find("c_e783", &id, L, 1500).await.ok().flatten();
        assert_eq!(found.map(|f| f.identity.fiscal_code.clone()), Some(Some("RSSMRA80A01H501U".into())));
        // Used at 1500, so alive at 2099 (idle 600), and dead past the absolute limit anyway.
        for t in [2000, 2500, 3000, 3500, 4000, 4500] {
            let alive = s.find("c_e783", &id, L, t).await.ok().flatten().is_some();
            assert_eq!(alive, t < 4600, "at {t}");
        }
        assert!(s.find("c_e783", &id, L, 4600).await.ok().flatten().is_none(), "past 1000 + 3600");
    }

    #[tokio::test]
    async fn an_idle_session_ends_and_another_entes_cookie_opens_nothing() {
        let s = SessionStore::memory();
        let id = s.open(record("c_e783", 1000), L).await.unwrap_or_default();
        assert!(s.find("c_a662", &id, L, 1001).await.ok().flatten().is_none(), "Bari must not accept Macerata's");
        assert!(s.find("c_e783", &id, L, 1601).await.ok().flatten().is_none(), "idle past 600 s");
        assert!(s.find("c_e783", "short", L, 1001).await.ok().flatten().is_none());
        assert!(s.find("c_e783", &"é".repeat(22), L, 1001).await.ok().flatten().is_none());
    }

    #[tokio::test]
    async fn logout_ends_the_session_and_a_login_state_is_taken_once() {
        let s = SessionStore::memory();
        let id = s.open(record("c_e783", 1000), L).await.unwrap_or_default();
        let closed = s.close("c_e783", &id).await.ok().flatten();
        assert_eq!(closed.map(|r| r.access_token), Some("at".into()));
        assert!(s.find("c_e783", &id, L, 1001).await.ok().flatten().is_none(), "the cookie after logout");
        assert!(s.put_pending("st", b"x".to_vec(), 600, 1000).await.is_ok());
        assert_eq!(s.take_pending("st", 1001).await.ok().flatten(), Some(b"x".to_vec()));
        assert_eq!(s.take_pending("st", 1002).await.ok().flatten(), None, "a replayed state");
        assert!(s.put_pending("old", b"x".to_vec(), 600, 1000).await.is_ok());
        assert_eq!(s.take_pending("old", 1600).await.ok().flatten(), None, "an expired login");
    }

    #[test]
    fn session_ids_are_random_and_stored_hashed() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        let k = key("c_e783", &a).unwrap_or_default();
        assert!(!k.contains(&a) && k.starts_with("session:c_e783:"), "{k}");
    }
}
