//! The README's main job: `edgegen-demo --once` (what `cargo xtask demo --once` runs) passes.

#[test]
fn demo_once_passes() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgegen-demo")).arg("--once").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("all checks passed: the release converged; a tenant was added live."), "{stdout}");
    // The coordinator wrote the PoPs' host map, and the thirteenth tenant, registered after
    // the PoPs started, was served by each of them.
    assert!(stdout.contains("edgegen_hosts: 12 hosts written by the coordinator"), "{stdout}");
    for pop in 1..=3 {
        let served = |l: &str| l.starts_with(&format!("   pop-{pop} -> 200 ")) && l.contains(" for initrode, ");
        assert!(stdout.lines().any(served), "{stdout}");
    }
    // Push: the release's purge reached every PoP through the Fastly API stand-in.
    for pop in 1..=3 {
        let pushed = |l: &str| l.starts_with(&format!("   push: pop-{pop} applied the purge ")) && l.contains("12/12");
        assert!(stdout.lines().any(pushed), "{stdout}");
    }
    assert!(stdout.contains("purge CDN surrogate keys: ok"), "{stdout}");
    // The live-data contract check caught initech's legacy `trial` plan before the commit,
    // then passed for every tenant after the data fix.
    assert!(
        stdout.contains("refused, nothing moved") && stdout.contains("initech /users/2/profile at /plan"),
        "{stdout}"
    );
    assert!(stdout.contains("60 sample(s) of 12 tenant(s)") && stdout.contains("60 valid, 0 invalid"), "{stdout}");
}

/// The demo without `--once` keeps its stack up and prints the dashboard's address; the
/// dashboard, in headless Chromium, shows the demo release's timeline with every PoP's
/// acknowledgement. The screenshot is the README's (`EDGEGEN_UPDATE_SCREENSHOT=1` writes it
/// to `docs/`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_dashboard_shows_the_release_timeline() {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};

    use edgegen_tests::browser::Browser;
    use edgegen_tests::coordinator::ADMIN_TOKEN;
    use serde_json::json;

    /// Stops the demo with SIGINT (its Ctrl-C path tears its own children down).
    struct Demo(std::process::Child);
    impl Drop for Demo {
        fn drop(&mut self) {
            let _ = Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
            if self.0.wait().is_err() {
                let _ = self.0.kill();
            }
        }
    }

    let mut child = Command::new(env!("CARGO_BIN_EXE_edgegen-demo")).stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let demo = Demo(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if let Some(url) = line.trim().strip_prefix("dashboard:") {
                let _ = tx.send(Ok(url.split_whitespace().next().unwrap_or_default().to_owned()));
            }
        }
        let _ = tx.send(Err(seen));
    });
    let url = match rx.recv_timeout(std::time::Duration::from_secs(240)) {
        Ok(Ok(url)) => url,
        Ok(Err(output)) => panic!("the demo ended without printing the dashboard's address:\n{output}"),
        Err(e) => panic!("no dashboard address from the demo: {e}"),
    };
    assert!(url.starts_with("http://127.0.0.1:") && url.contains("/ui#/release/"), "{url}");

    let browser = Browser::start().await;
    browser.goto(&url).await;
    browser.wait_for("the login form", "return !document.getElementById('login').hidden").await;
    browser.type_into("#token", ADMIN_TOKEN).await;
    browser.js("document.querySelector('#login button').click()").await;
    browser.wait_for("the timeline", "return document.querySelectorAll('#timeline circle.ack').length === 3").await;
    let rows = browser.js("return document.querySelectorAll('#timeline .pop-row').length").await;
    assert_eq!(rows, json!(3), "the demo's three PoPs");
    let status = browser.js("return document.getElementById('release-status').textContent").await;
    assert_eq!(status, json!("converged"));
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    browser.screenshot(&root.join("target/demo-dashboard-timeline.png")).await;
    if std::env::var_os("EDGEGEN_UPDATE_SCREENSHOT").is_some() {
        browser.screenshot(&root.join("docs/dashboard-timeline.png")).await;
    }
    browser.quit().await;
    drop(demo);
}
