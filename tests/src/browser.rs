//! A real browser for the dashboard's tests: Debian's headless Chromium driven over the
//! W3C WebDriver protocol by chromedriver (both installed by `cargo xtask bootstrap`), with
//! a fresh profile per session and the flags of a hermetic run (no network side channels,
//! no sync, no component updates).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// Chromium's flags for a hermetic headless run.
const CHROMIUM_ARGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
];

/// A headless Chromium session through chromedriver; the driver process (which owns the
/// browser) is killed when this is dropped.
pub struct Browser {
    child: Child,
    base: String,
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Kills chromedriver's process group — the one it was started in, so Chromium and its
    /// helpers go too, even when a test panicked before `quit`.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(binary: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(binary))
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!("{binary} is not installed: run `cargo xtask bootstrap` (Debian chromium, chromium-driver)")
    })
}

impl Browser {
    /// Starts chromedriver on a free port and opens a session with a fresh profile.
    ///
    /// # Panics
    /// When chromedriver or chromium is missing (`cargo xtask bootstrap` installs them) or
    /// does not start.
    pub async fn start() -> Browser {
        let port = crate::process::free_port().expect("a free port");
        let child = Command::new(find("chromedriver"))
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut driver = Browser {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while driver.http.get(format!("{}/status", driver.base)).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start on port {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", driver._profile.path().display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": find("chromium"), "args": args},
        }}});
        let session = driver.call("POST", "/session", Some(caps)).await;
        driver.session = session["sessionId"].as_str().expect("a WebDriver session").to_owned();
        driver
    }

    /// One WebDriver command; the answer's `value`. Panics on a WebDriver error.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "POST" => self.http.post(&url).json(&body.unwrap_or_else(|| json!({}))),
            "DELETE" => self.http.delete(&url),
            _ => self.http.get(&url),
        };
        let answer: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(answer["value"]["error"].is_null(), "WebDriver {method} {path}: {answer}");
        answer["value"].clone()
    }

    /// Navigates to `url`.
    pub async fn goto(&self, url: &str) {
        self.call("POST", &format!("/session/{}/url", self.session), Some(json!({ "url": url }))).await;
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] });
        self.call("POST", &format!("/session/{}/execute/sync", self.session), Some(body)).await
    }

    /// Polls `script` until it returns `true`.
    pub async fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.js(script).await == json!(true) {
                return;
            }
            if Instant::now() > deadline {
                let body = self.js("return document.body.innerText").await;
                panic!("timed out waiting for {what}; page text: {body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types into a field through real key events (WebDriver element/value).
    pub async fn type_into(&self, css: &str, text: &str) {
        let found = self
            .call(
                "POST",
                &format!("/session/{}/element", self.session),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        let element = found.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap().to_owned();
        let path = format!("/session/{}/element/{element}/value", self.session);
        self.call("POST", &path, Some(json!({ "text": text }))).await;
    }

    /// Saves a PNG of the viewport to `to`.
    pub async fn screenshot(&self, to: &Path) {
        let png = self.call("GET", &format!("/session/{}/screenshot", self.session), None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }

    /// Ends the session (the browser exits).
    pub async fn quit(&self) {
        self.call("DELETE", &format!("/session/{}", self.session), None).await;
    }
}
