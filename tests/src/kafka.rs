//! A real Kafka-protocol broker (`tansu`, sqlite storage) on an ephemeral port, and an
//! independent Kafka client (`tests/tools/kafka_tool.py`, Python confluent-kafka).

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

fn tool() -> PathBuf {
    crate::tool_path("kafka_tool.py")
}

impl Broker {
    /// Starts tansu and creates `topics` with `partitions` each.
    pub async fn start(topics: &[&str], partitions: u32) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("varco-tansu-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut b = Self { child: None, port: crate::free_port(), dir };
        b.spawn().await;
        for topic in topics {
            let out = Command::new("tansu")
                .args(["topic", "create", topic, "--broker", &b.url(), "--partitions", &partitions.to_string()])
                .output()
                .expect("tansu");
            assert!(out.status.success(), "tansu topic create: {}", String::from_utf8_lossy(&out.stderr));
        }
        b
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// `host:port` for librdkafka.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("tansu.log")).unwrap();
        let child = Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &self.url(),
                "--advertised-listener-url",
                &self.url(),
                "--storage-engine",
                // tansu resolves the path against its working directory.
                "sqlite://tansu.db",
            ])
            .current_dir(&self.dir)
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("tansu (cargo install tansu --version 0.6.0 --locked --no-default-features --features libsql)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL (the data stays in sqlite).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and storage.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Reads `n` records of `topic` from the beginning with the independent client: each as
    /// `{"key", "value", "headers": {name: value}}`.
    pub async fn consume(&self, topic: &str, n: usize) -> Vec<serde_json::Value> {
        self.consume_with_key(topic, n, None).await
    }

    /// As [`Broker::consume`]; with the consortium's `subject_key`, each record also has
    /// `subject` (in the clear or opened from `varco_sealed_subject`) and `subject_key` (the
    /// record key it must have), computed by the independent client.
    pub async fn consume_with_key(&self, topic: &str, n: usize, subject_key: Option<&str>) -> Vec<serde_json::Value> {
        let mut cmd = tokio::process::Command::new("python3");
        if let Some(k) = subject_key {
            cmd.env("VARCO_SUBJECT_KEY", k);
        }
        let out = cmd
            .arg(tool())
            .args(["consume", &self.bootstrap(), topic, &n.to_string(), "30"])
            .output()
            .await
            .expect("python3");
        assert!(out.status.success(), "kafka_tool consume: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Broker {
    /// Runs one command of the independent client; its JSON output.
    async fn tool(&self, args: &[&str]) -> serde_json::Value {
        let out = tokio::process::Command::new("python3").arg(tool()).args(args).output().await.expect("python3");
        assert!(out.status.success(), "kafka_tool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The broker's topic names.
    pub async fn topics(&self) -> Vec<String> {
        let v = self.tool(&["topics", &self.bootstrap()]).await;
        v.as_array().map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
