//! The durable outbox: an append-only log of segment files on local disk.
//!
//! - An append is acknowledged only after `fdatasync`: one writer thread takes every append
//!   waiting in its queue, writes them, syncs once and answers them all (group commit), so a
//!   sync costs one disk flush per batch, not per event.
//! - Records are `len u32 | crc32 u32 | seq u64 | payload` (little endian); the CRC covers the
//!   sequence number and the payload. On open the last segment is scanned and a torn tail (a
//!   crash mid-write) is cut off: it was never acknowledged.
//! - Readers see only synced records (`committed`), so nothing is relayed or delivered that a
//!   crash could still lose — an event that got an error is never delivered.
//! - Consumers (the Kafka relay, or subscriptions in single-node mode) register cursors; a
//!   segment is deleted only when every cursor is past it and the disk budget needs the room.

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::{oneshot, watch};

const HEADER: usize = 16;
/// Largest record accepted (one event).
pub const MAX_RECORD: usize = 1 << 20;
const MAX_BATCH_RECORDS: usize = 20_000;

/// Called after each group commit (for metrics).
pub type SyncObserver = Arc<dyn Fn() + Send + Sync>;

/// Why an append or a read failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboxError {
    #[error("the outbox disk budget ({0} bytes) is full of events not yet relayed or delivered")]
    Full(u64),
    #[error("outbox I/O error: {0}")]
    Io(String),
    #[error("the outbox writer has stopped")]
    Stopped,
}

fn io(e: std::io::Error) -> OutboxError {
    OutboxError::Io(e.to_string())
}

struct Append {
    records: Vec<Bytes>,
    done: oneshot::Sender<Result<u64, OutboxError>>,
}

/// Segment files by their first sequence number, with their sizes.
#[derive(Debug, Default)]
struct Segments {
    files: BTreeMap<u64, u64>,
}

/// The outbox, shared by publishers, the relay and readers.
pub struct Outbox {
    dir: PathBuf,
    tx: std::sync::mpsc::SyncSender<Append>,
    committed: watch::Receiver<u64>,
    segments: Arc<Mutex<Segments>>,
    disk_bytes: Arc<AtomicU64>,
    max_bytes: u64,
    cursors: Arc<Mutex<BTreeMap<String, Arc<AtomicU64>>>>,
    /// Held for the life of the outbox: two processes must never share a folder.
    _lock: File,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("dir", &self.dir).field("committed", &*self.committed.borrow()).finish()
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.log"))
}

fn encode(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Reads one record; `Ok(None)` at a clean end or a torn/corrupt tail.
fn read_record(r: &mut impl Read) -> std::io::Result<Option<(u64, Vec<u8>)>> {
    let mut h = [0u8; HEADER];
    match r.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let seq = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
    if len > MAX_RECORD {
        return Ok(None);
    }
    let mut payload = vec![0u8; len];
    match r.read_exact(&mut payload) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut c = crc32fast::Hasher::new();
    c.update(&seq.to_le_bytes());
    c.update(&payload);
    if c.finalize() != crc {
        return Ok(None);
    }
    Ok(Some((seq, payload)))
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir`, recovering from a crash, and starts its writer
    /// thread.
    pub fn open(dir: &Path, segment_bytes: u64, max_bytes: u64) -> Result<Arc<Self>, OutboxError> {
        Self::open_observed(dir, segment_bytes, max_bytes, None)
    }

    /// [`Outbox::open`], with `on_sync` called after every group commit.
    pub fn open_observed(
        dir: &Path,
        segment_bytes: u64,
        max_bytes: u64,
        on_sync: Option<SyncObserver>,
    ) -> Result<Arc<Self>, OutboxError> {
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::create_dir_all(dir.join("cursors")).map_err(io)?;
        let lock = File::create(dir.join("LOCK")).map_err(io)?;
        lock.try_lock()
            .map_err(|_| OutboxError::Io(format!("`{}` is in use by another varco process", dir.display())))?;
        let mut segments = Segments::default();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(first) = name.strip_suffix(".log").and_then(|n| n.parse::<u64>().ok()) {
                segments.files.insert(first, entry.metadata().map_err(io)?.len());
            }
        }
        // The last segment may end in a torn write: keep the valid prefix.
        let mut last_seq = 0;
        let (first, mut file) = match segments.files.iter().next_back().map(|(f, _)| *f) {
            Some(first) => {
                let path = segment_path(dir, first);
                let mut r = BufReader::new(File::open(&path).map_err(io)?);
                let mut valid = 0u64;
                last_seq = first.saturating_sub(1);
                while let Some((seq, payload)) = read_record(&mut r).map_err(io)? {
                    if seq != last_seq + 1 {
                        break;
                    }
                    last_seq = seq;
                    valid += (HEADER + payload.len()) as u64;
                }
                let f = OpenOptions::new().read(true).write(true).open(&path).map_err(io)?;
                if f.metadata().map_err(io)?.len() != valid {
                    tracing::warn!(segment = %path.display(), kept = valid, "outbox: cut a torn tail after a crash");
                    f.set_len(valid).map_err(io)?;
                    f.sync_all().map_err(io)?;
                }
                segments.files.insert(first, valid);
                (first, f)
            }
            None => {
                let path = segment_path(dir, 1);
                let f =
                    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
                File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
                segments.files.insert(1, 0);
                (1, f)
            }
        };
        file.seek(SeekFrom::End(0)).map_err(io)?;
        let disk: u64 = segments.files.values().sum();
        // Every position saved by an earlier run pins the outbox from the moment it opens,
        // before its reader (the relay, a subscription) has started again.
        let mut cursors = BTreeMap::new();
        for entry in std::fs::read_dir(dir.join("cursors")).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                continue;
            }
            if let Some(next) = std::fs::read_to_string(entry.path()).ok().and_then(|s| s.trim().parse::<u64>().ok()) {
                cursors.insert(name, Arc::new(AtomicU64::new(next)));
            }
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Append>(65_536);
        let (ctx, crx) = watch::channel(last_seq);
        let outbox = Arc::new(Self {
            dir: dir.to_owned(),
            tx,
            committed: crx,
            segments: Arc::new(Mutex::new(segments)),
            disk_bytes: Arc::new(AtomicU64::new(disk)),
            max_bytes,
            cursors: Arc::new(Mutex::new(cursors)),
            _lock: lock,
        });
        let writer = Writer {
            dir: dir.to_owned(),
            file,
            first,
            seq: last_seq,
            segment_bytes,
            committed: ctx,
            segments: outbox.segments.clone(),
            disk_bytes: outbox.disk_bytes.clone(),
            max_bytes,
            cursors: outbox.cursors.clone(),
            on_sync,
        };
        std::thread::Builder::new().name("varco-outbox".into()).spawn(move || writer.run(rx)).map_err(io)?;
        Ok(outbox)
    }

    /// Appends records durably; the last record's sequence number once synced to disk.
    pub async fn append(&self, records: Vec<Bytes>) -> Result<u64, OutboxError> {
        if self.disk_bytes.load(Relaxed) >= self.max_bytes {
            reclaim(&self.dir, &self.segments, &self.cursors, &self.disk_bytes, self.committed() + 1);
            if self.disk_bytes.load(Relaxed) >= self.max_bytes {
                return Err(OutboxError::Full(self.max_bytes));
            }
        }
        let (done, wait) = oneshot::channel();
        self.tx.try_send(Append { records, done }).map_err(|e| match e {
            std::sync::mpsc::TrySendError::Full(_) => OutboxError::Full(self.max_bytes),
            std::sync::mpsc::TrySendError::Disconnected(_) => OutboxError::Stopped,
        })?;
        wait.await.map_err(|_| OutboxError::Stopped)?
    }

    /// The last durable sequence number (0: empty).
    pub fn committed(&self) -> u64 {
        *self.committed.borrow()
    }

    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes.load(Relaxed)
    }

    /// The oldest sequence number still on disk.
    pub fn first_available(&self) -> u64 {
        self.segments.lock().files.keys().next().copied().unwrap_or(1)
    }

    /// A named, persistent consumer position: the next sequence number it needs. Segments
    /// before the lowest cursor may be deleted.
    pub fn cursor(&self, name: &str) -> Cursor {
        let path = self.dir.join("cursors").join(name);
        let next = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(1);
        let shared =
            self.cursors.lock().entry(name.to_owned()).or_insert_with(|| Arc::new(AtomicU64::new(next))).clone();
        shared.store(next, Relaxed);
        Cursor { path, next: shared, saved: next }
    }

    /// Registers reader `name` at its saved position (or the first record) without reading:
    /// from now on nothing it has not passed is reclaimed.
    pub fn hold(&self, name: &str) {
        let _ = self.cursor(name);
    }

    /// Forgets reader `name` (a removed subscription): its position no longer pins the outbox.
    pub fn forget(&self, name: &str) {
        self.cursors.lock().remove(name);
        let _ = std::fs::remove_file(self.dir.join("cursors").join(name));
    }

    /// The registered readers' names.
    pub fn readers(&self) -> Vec<String> {
        self.cursors.lock().keys().cloned().collect()
    }

    /// The lowest position of the registered readers, if any.
    pub fn floor(&self) -> Option<u64> {
        self.cursors.lock().values().map(|c| c.load(Relaxed)).min()
    }

    /// A reader from sequence number `from` on.
    pub fn reader(self: &Arc<Self>, from: u64) -> Reader {
        Reader { outbox: self.clone(), next: from.max(1), file: None, committed: self.committed.clone() }
    }
}

/// A consumer's position, saved to `cursors/<name>` (written aside and renamed).
#[derive(Debug)]
pub struct Cursor {
    path: PathBuf,
    next: Arc<AtomicU64>,
    saved: u64,
}

impl Cursor {
    pub fn next(&self) -> u64 {
        self.next.load(Relaxed)
    }

    /// Everything before `next` is done (in memory; `save` makes it durable).
    pub fn advance(&mut self, next: u64) {
        self.next.store(next, Relaxed);
    }

    /// Writes the position if it moved. A crash before this re-delivers (at least once).
    pub fn save(&mut self) -> Result<(), OutboxError> {
        let next = self.next();
        if next == self.saved {
            return Ok(());
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(next.to_string().as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        self.saved = next;
        Ok(())
    }
}

struct Writer {
    dir: PathBuf,
    file: File,
    first: u64,
    seq: u64,
    segment_bytes: u64,
    committed: watch::Sender<u64>,
    segments: Arc<Mutex<Segments>>,
    disk_bytes: Arc<AtomicU64>,
    max_bytes: u64,
    cursors: Arc<Mutex<BTreeMap<String, Arc<AtomicU64>>>>,
    on_sync: Option<SyncObserver>,
}

impl Writer {
    fn run(mut self, rx: std::sync::mpsc::Receiver<Append>) {
        let mut buf = Vec::with_capacity(1 << 20);
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            let mut n = batch[0].records.len();
            while n < MAX_BATCH_RECORDS {
                match rx.try_recv() {
                    Ok(a) => {
                        n += a.records.len();
                        batch.push(a);
                    }
                    Err(_) => break,
                }
            }
            buf.clear();
            let start_seq = self.seq;
            let mut ends = Vec::with_capacity(batch.len());
            let mut seq = start_seq;
            for a in &batch {
                for r in &a.records {
                    seq += 1;
                    encode(seq, r, &mut buf);
                }
                ends.push(seq);
            }
            let result = self.file.write_all(&buf).and_then(|()| self.file.sync_data());
            match result {
                Ok(()) => {
                    self.seq = seq;
                    let len = buf.len() as u64;
                    self.disk_bytes.fetch_add(len, Relaxed);
                    let size = {
                        let mut s = self.segments.lock();
                        let e = s.files.entry(self.first).or_insert(0);
                        *e += len;
                        *e
                    };
                    self.committed.send_replace(seq);
                    if let Some(observe) = &self.on_sync {
                        observe();
                    }
                    for (a, end) in batch.into_iter().zip(ends) {
                        let _ = a.done.send(Ok(end));
                    }
                    if size >= self.segment_bytes {
                        if let Err(e) = self.roll() {
                            tracing::error!(error = %e, "outbox: cannot start a new segment");
                        }
                    }
                    if self.disk_bytes.load(Relaxed) * 5 >= self.max_bytes * 4 {
                        reclaim(&self.dir, &self.segments, &self.cursors, &self.disk_bytes, self.seq + 1);
                    }
                }
                Err(e) => {
                    // Nothing of this batch was acknowledged: cut it off again.
                    tracing::error!(error = %e, "outbox: write failed; the batch is refused");
                    let keep = self.segments.lock().files.get(&self.first).copied().unwrap_or(0);
                    let _ = self.file.set_len(keep);
                    let _ = self.file.seek(SeekFrom::End(0));
                    for a in batch {
                        let _ = a.done.send(Err(OutboxError::Io(e.to_string())));
                    }
                }
            }
        }
    }

    fn roll(&mut self) -> std::io::Result<()> {
        let first = self.seq + 1;
        let path = segment_path(&self.dir, first);
        let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        File::open(&self.dir)?.sync_all()?;
        self.file = f;
        self.first = first;
        self.segments.lock().files.insert(first, 0);
        Ok(())
    }
}

/// Deletes whole segments every consumer has passed (never the active, last one) and
/// recounts the bytes on disk.
fn reclaim(
    dir: &Path,
    segments: &Mutex<Segments>,
    cursors: &Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    disk_bytes: &AtomicU64,
    end: u64,
) {
    let floor = cursors.lock().values().map(|c| c.load(Relaxed)).min().unwrap_or(end);
    let mut s = segments.lock();
    let firsts: Vec<u64> = s.files.keys().copied().collect();
    for w in firsts.windows(2) {
        // Every record of segment w[0] is before w[1].
        if w[1] > floor || std::fs::remove_file(segment_path(dir, w[0])).is_err() {
            break;
        }
        s.files.remove(&w[0]);
    }
    disk_bytes.store(s.files.values().sum(), Relaxed);
}

/// Reads records in order from a sequence number on, waiting for new ones.
pub struct Reader {
    outbox: Arc<Outbox>,
    next: u64,
    file: Option<(BufReader<File>, u64)>,
    committed: watch::Receiver<u64>,
}

impl Reader {
    /// The next sequence number this reader returns.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Moves to another position (replay).
    pub fn seek(&mut self, next: u64) {
        self.next = next.max(1);
        self.file = None;
    }

    /// The next committed record, waiting until there is one.
    pub async fn next(&mut self) -> Result<(u64, Bytes), OutboxError> {
        loop {
            if *self.committed.borrow_and_update() >= self.next {
                if let Some(r) = self.read_next()? {
                    return Ok(r);
                }
                // Committed but unreadable here: the segment rolled; the loop reopens.
                continue;
            }
            self.committed.changed().await.map_err(|_| OutboxError::Stopped)?;
        }
    }

    /// The next record if it is already committed, without waiting.
    pub fn try_next(&mut self) -> Result<Option<(u64, Bytes)>, OutboxError> {
        if *self.committed.borrow() >= self.next {
            return self.read_next();
        }
        Ok(None)
    }

    fn read_next(&mut self) -> Result<Option<(u64, Bytes)>, OutboxError> {
        for _ in 0..3 {
            if self.file.is_none() {
                self.open_at()?;
            }
            let Some((r, _)) = self.file.as_mut() else { return Ok(None) };
            match read_record(r).map_err(io)? {
                Some((seq, payload)) if seq == self.next => {
                    self.next += 1;
                    return Ok(Some((seq, Bytes::from(payload))));
                }
                Some((seq, _)) if seq < self.next => continue,
                // End of this segment (or a gap): find the segment holding `next`.
                _ => self.file = None,
            }
        }
        Ok(None)
    }

    /// Opens the segment holding `next` and skips to it; a position already deleted moves
    /// to the oldest record still on disk.
    fn open_at(&mut self) -> Result<(), OutboxError> {
        let first = {
            let s = self.outbox.segments.lock();
            match s.files.range(..=self.next).next_back() {
                Some((f, _)) => *f,
                None => match s.files.keys().next() {
                    Some(f) => {
                        tracing::warn!(
                            wanted = self.next,
                            oldest = *f,
                            "outbox: events before the oldest segment were reclaimed"
                        );
                        self.next = *f;
                        *f
                    }
                    None => return Ok(()),
                },
            }
        };
        let f = File::open(segment_path(&self.outbox.dir, first)).map_err(io)?;
        let mut r = BufReader::with_capacity(256 * 1024, f);
        let mut seq = first;
        while seq < self.next {
            match read_record(&mut r).map_err(io)? {
                Some((s, _)) => seq = s + 1,
                None => break,
            }
        }
        self.file = Some((r, first));
        Ok(())
    }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
