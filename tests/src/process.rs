//! The real `varco` process on a temporary config and ephemeral ports.

use crate::client::{Client, Resp};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound and released), never the same one twice in a test
/// process: the kernel may hand a just-released port out again, and two listeners of one
/// config on the same port fail the start.
/// Starts a helper peer (a tool under `tests/tools/`, run by python3) that prints `ready` on its
/// first line once it serves; it is killed when the returned child is dropped.
pub async fn spawn_ready_tool(tool: &str, args: &[&str]) -> tokio::process::Child {
    use tokio::io::AsyncBufReadExt;
    let path = crate::tool_path(tool).display().to_string();
    let mut child = tokio::process::Command::new("python3")
        .arg(&path)
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut ready = String::new();
    let out = child.stdout.take().expect("piped stdout");
    tokio::io::BufReader::new(out).read_line(&mut ready).await.expect("the tool's first line");
    assert_eq!(ready.trim(), "ready", "{tool} did not start");
    child
}

/// The tests' PDND token endpoint (`tests/tools/pdnd_peer.py`) on a free port with the
/// configuration `conf` (written to `dir/pdnd.json`): its port and process.
pub async fn pdnd_peer(dir: &Path, conf: &serde_json::Value) -> (u16, tokio::process::Child) {
    let port = free_port();
    let file = dir.join("pdnd.json");
    std::fs::write(&file, conf.to_string()).unwrap();
    (port, spawn_ready_tool("pdnd_peer.py", &[&port.to_string(), file.to_str().unwrap()]).await)
}

pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The `varco` binary next to the test binary: the scenario tests are test targets of the
/// `varco` package, so cargo builds the binary before running them.
pub fn varco_bin() -> PathBuf {
    if let Ok(p) = std::env::var("VARCO_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("varco");
    assert!(bin.exists(), "{} is missing: run the scenarios with `cargo test --workspace`", bin.display());
    bin
}

/// A running varco. Placeholders in the config: `{PORT}` (the public listener), `{ADMIN}`.
pub struct Varco {
    child: Option<Child>,
    pub port: u16,
    pub admin: u16,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub client: Client,
    pub admin_client: Client,
    env: Vec<(String, String)>,
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn temp_dir() -> PathBuf {
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("varco-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

impl Varco {
    /// The binary under test.
    pub fn bin() -> PathBuf {
        varco_bin()
    }

    /// Writes the config, starts varco and waits until it is ready.
    pub async fn start(config: &str) -> Self {
        Self::start_with_env(config, &[]).await
    }

    pub async fn start_with_env(config: &str, env: &[(&str, &str)]) -> Self {
        let (port, admin) = (free_port(), free_port());
        let dir = temp_dir();
        let text = config
            .replace("{PORT}", &port.to_string())
            .replace("{ADMIN}", &admin.to_string())
            .replace("{DIR}", &dir.display().to_string());
        let cfg = dir.join("varco.yaml");
        std::fs::write(&cfg, text).unwrap();
        let mut v = Self {
            child: None,
            port,
            admin,
            log: dir.join("varco.log"),
            config: cfg,
            dir,
            client: Client::new(port),
            admin_client: Client::new(admin),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        v.spawn();
        v.wait_ready().await;
        v
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
        let mut cmd = Command::new(varco_bin());
        cmd.args(["serve", "--config"])
            .arg(&self.config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().unwrap());
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("varco exited with {status} before it was ready; log:\n{}", self.log_text());
            }
            let ok = tokio::net::TcpStream::connect(("127.0.0.1", self.admin)).await.is_ok()
                && tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok();
            if ok && self.admin_client.get("localhost", "/readyz").await.status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "varco not ready in 20 s; log:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn signal(&self, sig: i32) {
        let _ = std::process::Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status();
    }

    /// Waits for the process to exit; its exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return s.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the process again on the same config, ports and folder (after a kill).
    pub async fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Keep the previous run's log for the report.
        let old = std::fs::read_to_string(&self.log).unwrap_or_default();
        std::fs::write(self.dir.join("varco.previous.log"), old).unwrap();
        self.spawn();
        self.wait_ready().await;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn get(&self, host: &str, path: &str) -> Resp {
        self.client.get(host, path).await
    }

    pub async fn send(&self, method: &str, host: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        self.client.send(method, host, path, headers, body).await
    }

    /// Replaces the config file (placeholders filled as at start).
    pub fn rewrite_config(&self, config: &str) {
        let text = config
            .replace("{PORT}", &self.port.to_string())
            .replace("{ADMIN}", &self.admin.to_string())
            .replace("{DIR}", &self.dir.display().to_string());
        std::fs::write(&self.config, text).unwrap();
    }

    pub async fn reload(&self) -> Resp {
        self.admin_client.send("POST", "localhost", "/admin/reload", &[], b"").await
    }

    /// The ente's audit records as `varco audit query` prints them (`args` adds filters such as
    /// `--route gpd`), read again every 100 ms until `done` holds of them or 5 s have passed
    /// (the trail syncs its records within `sync_interval`); with the text as printed.
    pub async fn audit_records(
        &self,
        tenant: &str,
        args: &[&str],
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> (Vec<serde_json::Value>, String) {
        let mut last = (Vec::new(), String::new());
        for _ in 0..50 {
            let out = Command::new(varco_bin())
                .args(["audit", "query", "--tenant", tenant])
                .args(args)
                .arg("--config")
                .arg(&self.config)
                .output()
                .expect("varco audit query");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let records: Vec<serde_json::Value> =
                text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
            if done(&records) {
                return (records, text);
            }
            last = (records, text);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last
    }

    pub async fn metrics(&self) -> String {
        String::from_utf8_lossy(&self.admin_client.get("localhost", "/metrics").await.body).into_owned()
    }
}

impl Drop for Varco {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
