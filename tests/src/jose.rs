//! Tokens from an independent JOSE implementation: `tests/tools/jwt_tool.py` (PyJWT), run as a
//! process. Keys live in a temp folder whose `jwks.json` a test serves to varco.

use std::path::PathBuf;

pub struct Jose {
    pub dir: PathBuf,
}

fn tool() -> PathBuf {
    crate::tool_path("jwt_tool.py")
}

impl Jose {
    pub fn new() -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("varco-jose-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    async fn run(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::new("python3").arg(tool()).args(args).output().await.expect("python3");
        assert!(out.status.success(), "jwt_tool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A new key pair; its public JWK is appended to `jwks.json`.
    pub async fn keygen(&self, kid: &str, alg: &str) {
        let dir = self.dir.display().to_string();
        self.run(&["keygen", &dir, kid, alg]).await;
    }

    /// The ente's key `kid` (RS256, as PDND takes), and `registered.json`: the public keys PDND
    /// knows of the ente's client (so what e-services resolve the ente's `kid` to). Keys made
    /// after this are not registered.
    pub async fn ente_key(&self, kid: &str) -> PathBuf {
        self.keygen(kid, "RS256").await;
        let registered = self.dir.join("registered.json");
        std::fs::write(&registered, self.jwks()).unwrap();
        registered
    }

    pub fn jwks(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("jwks.json")).unwrap()
    }

    /// A signed token; `exp`/`nbf`/`iat` may be relative (`"+60"`).
    pub async fn mint(
        &self,
        kid: &str,
        alg: &str,
        claims: &serde_json::Value,
        header: Option<&serde_json::Value>,
    ) -> String {
        let dir = self.dir.display().to_string();
        let c = claims.to_string();
        match header {
            Some(h) => self.run(&["mint", &dir, kid, alg, &c, &h.to_string()]).await,
            None => self.run(&["mint", &dir, kid, alg, &c]).await,
        }
    }

    pub async fn unsigned(&self, claims: &serde_json::Value) -> String {
        self.run(&["none", &claims.to_string()]).await
    }

    /// Verifies `token` against a JWKS document (independently of varco); its claims.
    pub async fn verify(&self, jwks: &[u8], token: &str, aud: &str) -> serde_json::Value {
        let path = self.dir.join("verify-jwks.json");
        std::fs::write(&path, jwks).unwrap();
        let out = self.run(&["verify", &path.display().to_string(), token, aud]).await;
        serde_json::from_str(&out).unwrap()
    }

    /// True when an independent implementation refuses `token` with `jwks` (unknown `kid`,
    /// bad signature, wrong audience).
    pub async fn refuses(&self, jwks: &[u8], token: &str, aud: &str) -> bool {
        let path = self.dir.join("verify-jwks.json");
        std::fs::write(&path, jwks).unwrap();
        let out = tokio::process::Command::new("python3")
            .arg(tool())
            .args(["verify", &path.display().to_string(), token, aud])
            .output()
            .await
            .expect("python3");
        !out.status.success()
    }

    pub async fn hs_confusion(&self, kid: &str, claims: &serde_json::Value) -> String {
        let dir = self.dir.display().to_string();
        self.run(&["hs-confusion", &dir, kid, &claims.to_string()]).await
    }
}

impl Jose {
    /// Has the test CA (`ca.pem` in the folder) certify `kid`'s key; the base64 DER for `x5c`.
    pub async fn cert(&self, kid: &str) -> String {
        self.run(&["cert", &self.dir.display().to_string(), kid]).await
    }

    /// ModI INTEGRITY_REST headers for `body`: (`Digest`, `Agid-JWT-Signature`). `header` and
    /// `claims` add to or replace the JOSE header and the default claims.
    #[allow(clippy::too_many_arguments)] // mirrors the tool's command line
    pub async fn modi(
        &self,
        kid: &str,
        alg: &str,
        aud: &str,
        content_type: &str,
        body: &[u8],
        header: &serde_json::Value,
        claims: &serde_json::Value,
    ) -> (String, String) {
        let f = self.dir.join(format!("body-{}", fastrand_name()));
        std::fs::write(&f, body).unwrap();
        let dir = self.dir.display().to_string();
        let out = self
            .run(&[
                "modi",
                &dir,
                kid,
                alg,
                aud,
                content_type,
                &f.display().to_string(),
                &header.to_string(),
                &claims.to_string(),
            ])
            .await;
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        (v["digest"].as_str().unwrap().to_owned(), v["signature"].as_str().unwrap().to_owned())
    }

    /// An AUDIT_REST tracking evidence and the SHA-256 (hex) a voucher's `digest` binds it with.
    pub async fn audit(&self, kid: &str, alg: &str, aud: &str, claims: &serde_json::Value) -> (String, String) {
        let dir = self.dir.display().to_string();
        let out = self.run(&["audit", &dir, kid, alg, aud, &claims.to_string()]).await;
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        (v["evidence"].as_str().unwrap().to_owned(), v["digest"].as_str().unwrap().to_owned())
    }

    /// Checks a ModI response signature independently; its claims (panics when invalid).
    pub async fn verify_modi(
        &self,
        jwks: &[u8],
        digest: &str,
        signature: &str,
        aud: &str,
        body: &[u8],
        content_type: &str,
    ) -> serde_json::Value {
        let j = self.dir.join("verify-modi-jwks.json");
        std::fs::write(&j, jwks).unwrap();
        let f = self.dir.join(format!("resp-{}", fastrand_name()));
        std::fs::write(&f, body).unwrap();
        let args =
            ["verify-modi", &j.display().to_string(), digest, signature, aud, &f.display().to_string(), content_type];
        serde_json::from_str(&self.run(&args).await).unwrap()
    }
}

fn fastrand_name() -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::SeqCst).to_string()
}

impl Default for Jose {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Jose {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
