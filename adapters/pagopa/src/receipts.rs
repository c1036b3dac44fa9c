//! Receipt ids already received, so that a duplicate `paSendRT` has no second effect, even
//! across a crash. Each receipt is a short journal in the ente's file, every line synced:
//!
//! - `P <id> <position>`: about to publish; `position` is the outbox's last sequence number
//!   before the publish;
//! - `D <id>`: published (a line with the id alone, the older format, means the same);
//! - `X <id>`: the publish failed; the id is free again.
//!
//! A crash after `P` leaves the outcome open. On the next start each open id is settled by
//! looking for its event in the outbox from `position` on (a few records): found, it is done
//! (the node's retry answers `PAA_RECEIPT_DUPLICATA`, no second event); not found, it is free
//! (the retry publishes it). A receipt the node was told OK is never lost, and none is
//! published twice.

use parking_lot::Mutex as SyncMutex;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

#[derive(Debug)]
pub struct ReceiptStore {
    path: PathBuf,
    ids: tokio::sync::Mutex<HashSet<String>>,
}

/// One store per file in the process: adapters of successive configurations share it.
fn registry() -> &'static SyncMutex<HashMap<PathBuf, Arc<ReceiptStore>>> {
    static R: OnceLock<SyncMutex<HashMap<PathBuf, Arc<ReceiptStore>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Where a receipt's event would be and how to look for it.
pub trait Published {
    /// The outbox's last sequence number now.
    fn position(&self) -> u64;
    /// Whether the event of receipt `id` is in the outbox at or after `from`.
    fn published_since(&self, from: u64, id: &str) -> Result<bool, String>;
}

fn append(path: &Path, line: &str) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| {
            f.write_all(line.as_bytes())?;
            f.sync_data()
        })
        .map_err(|e| format!("`{}`: {e}", path.display()))
}

/// A receipt id as one journal token: `%`, space and line breaks percent-encoded, so that
/// every id has its own token and the line splits where it should.
fn token(id: &str) -> String {
    id.replace('%', "%25").replace(' ', "%20").replace('\n', "%0A").replace('\r', "%0D")
}

/// The receipt id of a journal token.
fn untoken(t: &str) -> String {
    t.replace("%20", " ").replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%")
}

impl ReceiptStore {
    /// Opens the ente's journal, settling what a crash left open against `published`.
    pub fn open(dir: &Path, tenant: &str, published: &dyn Published) -> Result<Arc<Self>, String> {
        let path = dir.join(format!("{tenant}.receipts"));
        let mut reg = registry().lock();
        if let Some(s) = reg.get(&path) {
            return Ok(s.clone());
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("`{}`: {e}", dir.display()))?;
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("`{}`: {e}", path.display())),
        };
        let mut done = HashSet::new();
        let mut open: HashMap<String, u64> = HashMap::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("P"), Some(id), Some(pos)) => {
                    open.insert(id.to_owned(), pos.parse().unwrap_or(0));
                }
                (Some("D"), Some(id), None) => {
                    open.remove(id);
                    done.insert(id.to_owned());
                }
                (Some("X"), Some(id), None) => {
                    open.remove(id);
                }
                (Some(id), None, None) => {
                    done.insert(id.to_owned());
                }
                _ => tracing::warn!(file = %path.display(), line, "unreadable receipt journal line skipped"),
            }
        }
        let mut open: Vec<(String, u64)> = open.into_iter().collect();
        open.sort();
        for (id, from) in open {
            let found = published.published_since(from, &untoken(&id))?;
            tracing::warn!(tenant, receipt = %id, published = found, "a receipt left open by a crash was settled");
            if found {
                append(&path, &format!("D {id}\n"))?;
                done.insert(id);
            } else {
                append(&path, &format!("X {id}\n"))?;
            }
        }
        let s = Arc::new(Self { path: path.clone(), ids: tokio::sync::Mutex::new(done) });
        reg.insert(path, s.clone());
        Ok(s)
    }

    /// Whether `id` was recorded here.
    pub async fn has(&self, id: &str) -> bool {
        self.ids.lock().await.contains(&token(id))
    }

    /// Runs `effect` unless `id` was recorded; true when it ran and the id is now recorded.
    /// `position` is the outbox's position before the effect (for settling after a crash).
    pub async fn record_once<F, Fut>(&self, id: &str, position: u64, effect: F) -> Result<bool, String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<u64, String>>,
    {
        let id = token(id);
        let mut ids = self.ids.lock().await;
        if ids.contains(&id) {
            return Ok(false);
        }
        append(&self.path, &format!("P {id} {position}\n"))?;
        if let Err(e) = effect().await {
            // Not synced on purpose: lost, the next start finds no event and frees the id anyway.
            let _ = std::fs::OpenOptions::new()
                .append(true)
                .open(&self.path)
                .and_then(|mut f| f.write_all(format!("X {id}\n").as_bytes()));
            return Err(e);
        }
        append(&self.path, &format!("D {id}\n"))?;
        ids.insert(id);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An outbox stand-in for these unit tests: the ids "published" and at which position.
    struct MockOutbox(Vec<(u64, &'static str)>);

    impl Published for MockOutbox {
        fn position(&self) -> u64 {
            self.0.last().map_or(0, |(p, _)| *p)
        }
        fn published_since(&self, from: u64, id: &str) -> Result<bool, String> {
            Ok(self.0.iter().any(|(p, i)| *p >= from && *i == id))
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("varco-receipts-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    #[test]
    fn every_id_has_its_own_token() {
        for id in ["rt-1", "a b", "a_b", "a%20b", "x\ny", "50%"] {
            assert_eq!(untoken(&token(id)), id);
            assert!(!token(id).contains([' ', '\n', '\r']));
        }
        assert_ne!(token("a b"), token("a_b"));
        assert_ne!(token("a b"), token("a%20b"));
    }

    #[test]
    fn a_crash_after_the_publish_settles_as_done_and_before_it_as_free() {
        let d = dir("crash");
        // What a crash leaves: rt-1 and rt-2 were about to be published from position 7; only
        // rt-1's event made it. rt-0 is from the older format; rt-3 failed cleanly.
        std::fs::write(d.join("c_e783.receipts"), "rt-0\nP rt-1 7\nP rt-2 7\nP rt-3 8\nX rt-3\n").expect("write");
        let outbox = MockOutbox(vec![(5, "rt-0"), (8, "rt-1")]);
        let s = ReceiptStore::open(&d, "c_e783", &outbox).expect("open");
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            assert!(s.has("rt-0").await);
            assert!(s.has("rt-1").await, "published before the crash: a retry is a duplicate");
            assert!(!s.has("rt-2").await, "never published: a retry publishes it");
            assert!(!s.has("rt-3").await);
            let ran = s.record_once("rt-2", 8, || async { Ok(9) }).await.expect("record");
            assert!(ran);
            assert!(!s.record_once("rt-1", 9, || async { Ok(10) }).await.expect("dup"));
        });
        let journal = std::fs::read_to_string(d.join("c_e783.receipts")).expect("read");
        assert!(journal.ends_with("D rt-1\nX rt-2\nP rt-2 8\nD rt-2\n"), "{journal}");
        let _ = std::fs::remove_dir_all(d);
    }
}
