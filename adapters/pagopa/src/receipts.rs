//! Receipt ids already received, so that a duplicate `paSendRT` has no second effect. The
//! effect (the durable event) happens first, then the id is appended and synced: a crash in
//! between may store a receipt twice (at least once), never lose one the node was told OK.

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

impl ReceiptStore {
    pub fn open(dir: &Path, tenant: &str) -> Result<Arc<Self>, String> {
        let path = dir.join(format!("{tenant}.receipts"));
        let mut reg = registry().lock();
        if let Some(s) = reg.get(&path) {
            return Ok(s.clone());
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("`{}`: {e}", dir.display()))?;
        let ids = match std::fs::read_to_string(&path) {
            Ok(text) => text.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(format!("`{}`: {e}", path.display())),
        };
        let s = Arc::new(Self { path: path.clone(), ids: tokio::sync::Mutex::new(ids) });
        reg.insert(path, s.clone());
        Ok(s)
    }

    /// Runs `effect` unless `id` was recorded; true when it ran and the id is now recorded.
    pub async fn record_once<F, Fut>(&self, id: &str, effect: F) -> Result<bool, String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<u64, String>>,
    {
        let mut ids = self.ids.lock().await;
        if ids.contains(id) {
            return Ok(false);
        }
        effect().await?;
        let line = format!("{}\n", id.replace(['\n', '\r'], " "));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| {
                f.write_all(line.as_bytes())?;
                f.sync_data()
            })
            .map_err(|e| format!("`{}`: {e}", self.path.display()))?;
        ids.insert(id.to_owned());
        Ok(true)
    }
}
