//! The dashboard in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver, installed by `cargo xtask bootstrap`) against a coordinator on a real
//! socket. Checks that the admin token is required, that it never lands in a URL, and that
//! a release's convergence timeline shows one row per PoP, one dot per acknowledgement, the
//! max-age bound and the rollback marker, and that an open release's timeline fills in live
//! as PoPs acknowledge. Saves a screenshot of the timeline to
//! `target/dashboard-timeline.png` (the README's is made from the demo stack, by
//! `edgegen-tests`' `demo_dashboard_shows_the_release_timeline`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use edgegen_tests::browser::Browser;
use serde_json::json;

use crate::support::{ADMIN, TestApp, ack, add_tenant, send, test_app};

/// Serves the test app's router on a real socket.
async fn serve(app: &TestApp) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// One release of three tenants acknowledged by three PoPs at different times, then rolled
/// back. Returns the release id.
async fn rolled_back_release(app: &TestApp) -> String {
    let pops = ["LCY", "FRA", "IAD"];
    let tenants = ["acme", "globex", "initech"];
    for t in tenants {
        add_tenant(&app.router, t).await;
        for pop in pops {
            assert_eq!(ack(&app.router, pop, t, 1).await.status, 204, "PoPs are live before the release");
        }
    }
    let released = crate::support::release(&app.router, &tenants).await;
    let id = released["id"].as_str().unwrap().to_owned();
    for (i, pop) in pops.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(60 * (i as u64 + 1))).await;
        for t in tenants {
            assert_eq!(ack(&app.router, pop, t, 2).await.status, 204);
        }
    }
    let report = json!({"pop": "FRA", "tenant": "acme", "kind": "contract_mismatch", "generation": 2,
        "expected_schema": "1.8.3", "expected_contract": crate::support::contract(2),
        "observed_schema": "1.8.2", "path": "/users/42", "observed_at": 1});
    let a = send(&app.router, "POST", "/v1/edge/reports", Some(crate::support::EDGE), Some(report)).await;
    assert_eq!(a.status, 202, "{}", a.text);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rolled = send(&app.router, "POST", &format!("/v1/releases/{id}/rollback"), Some(ADMIN), None).await;
    assert_eq!(rolled.status, 201, "{}", rolled.text);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_requires_the_admin_token_and_draws_the_release_timeline() {
    let app = test_app();
    let id = rolled_back_release(&app).await;
    let addr = serve(&app).await;
    let driver = Browser::start().await;
    let ui = format!("http://{addr}/ui");

    // Without a token: the login form, and nothing of the release, even on its own address.
    driver.goto(&format!("{ui}#/release/{id}")).await;
    driver.wait_for("the login form", "return !document.getElementById('login').hidden").await;
    assert_eq!(driver.js("return document.getElementById('nav').hidden").await, json!(true));
    assert_eq!(driver.js("return document.getElementById('timeline') === null").await, json!(true));

    // A wrong token is refused by the coordinator and the form says so.
    driver.type_into("#token", "not-the-admin-token").await;
    driver.js("document.querySelector('#login button').click()").await;
    driver
        .wait_for(
            "the refusal",
            "return document.getElementById('login-error').textContent.includes('invalid bearer token')",
        )
        .await;
    assert_eq!(driver.js("return sessionStorage.length").await, json!(0), "a refused token is not kept");

    // The admin token logs in; it never appears in the address.
    driver.type_into("#token", ADMIN).await;
    driver.js("document.querySelector('#login button').click()").await;
    driver.wait_for("the timeline", "return document.getElementById('timeline') !== null").await;
    let url = driver.js("return location.href").await;
    assert!(!url.as_str().unwrap().contains(ADMIN), "token in the URL: {url}");
    assert_eq!(
        driver.js("return performance.getEntriesByType('resource').some(e => e.name.includes('admin-token'))").await,
        json!(false)
    );

    let count = |css: &str| format!("return document.querySelectorAll('#timeline {css}').length");
    assert_eq!(driver.js(&count(".pop-row")).await, json!(3), "one row per live PoP");
    assert_eq!(driver.js(&count("circle.ack")).await, json!(3), "one dot per PoP acknowledgement");
    assert_eq!(driver.js(&count(".bound-marker")).await, json!(1), "the max-age bound");
    assert_eq!(driver.js(&count(".rollback-marker")).await, json!(1), "the rollback marker");
    let label = driver.js("return document.querySelector('#timeline .rollback-marker text').textContent").await;
    assert!(label.as_str().unwrap().starts_with("rollback rel-"), "{label}");
    let status = driver.js("return document.getElementById('release-status').textContent").await;
    assert_eq!(status, json!("rolled_back"));
    let leases = driver.js("return document.getElementById('leases').textContent").await;
    assert_eq!(leases, json!("3 confirmed, 0 provably expired, 0 unconfirmed"), "the lease groups");
    let rows = driver.js("return document.querySelectorAll('#changes tbody tr').length").await;
    assert_eq!(rows, json!(3), "per-tenant from -> to");

    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-timeline.png");
    driver.screenshot(&target).await;

    // The releases page lists the release and its rollback; logging out forgets the token.
    driver.goto(&format!("{ui}#/releases")).await;
    driver.wait_for("the releases table", "return document.querySelectorAll('#releases tbody tr').length === 2").await;
    // The rollback is open (no PoP has acknowledged generation 3 yet): its timeline shows
    // three pending PoPs and fills in live, without a reload, as they acknowledge.
    let shown = send(&app.router, "GET", &format!("/v1/releases/{id}"), Some(ADMIN), None).await;
    let rollback = shown.body["rolled_back_by"].as_str().unwrap().to_owned();
    driver.goto(&format!("{ui}#/release/{rollback}")).await;
    driver.wait_for("the rollback's timeline", &format!("{} === 3", count("circle.pending"))).await;
    assert_eq!(driver.js(&count("circle.ack")).await, json!(0));
    driver.js("window.notReloaded = true").await;
    for pop in ["LCY", "FRA", "IAD"] {
        for t in ["acme", "globex", "initech"] {
            assert_eq!(ack(&app.router, pop, t, 3).await.status, 204);
        }
    }
    driver.wait_for("the live acknowledgements", &format!("{} === 3", count("circle.ack"))).await;
    assert_eq!(driver.js("return window.notReloaded === true").await, json!(true), "updated in place");
    driver.wait_for("converged", "return document.getElementById('release-status').textContent === 'converged'").await;

    driver.goto(&format!("{ui}#/reports")).await;
    driver.wait_for("the reports table", "return document.querySelectorAll('#reports tbody tr').length === 1").await;
    let row = driver.js("return document.querySelector('#reports tbody tr').textContent").await;
    assert!(
        row.as_str().unwrap().contains("contract_mismatch") && row.as_str().unwrap().contains("/users/42"),
        "{row}"
    );
    driver.js("document.getElementById('logout').click()").await;
    driver.wait_for("the login form again", "return !document.getElementById('login').hidden").await;
    assert_eq!(driver.js("return sessionStorage.length").await, json!(0));
    driver.quit().await;
}

/// With 1,000 tenants and 200 releases, each paginated view is drawn within 500 ms of the
/// page's navigation (fetch and render included), measured by the page's own clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_pages_load_within_500_ms_with_1000_tenants_and_200_releases() {
    let app = test_app();
    for i in 0..1000 {
        add_tenant(&app.router, &format!("tenant-{i:04}")).await;
    }
    for i in 0..200 {
        crate::support::release(&app.router, &[&format!("tenant-{i:04}")]).await;
    }
    let addr = serve(&app).await;
    let driver = Browser::start().await;
    let ui = format!("http://{addr}/ui");
    driver.goto(&ui).await;
    driver.type_into("#token", ADMIN).await;
    driver.js("document.querySelector('#login button').click()").await;
    driver.wait_for("the releases page", "return document.body.dataset.view === '/releases'").await;
    for (view, table, rows) in
        [("/tenants", "#tenants", 50), ("/releases", "#releases", 50), ("/rollbacks", "#rollbacks", 0)]
    {
        // A fresh page load (the token stays in the tab's sessionStorage).
        driver.goto("about:blank").await;
        driver.goto(&format!("{ui}#{view}")).await;
        driver.wait_for(view, &format!("return document.body.dataset.view === '{view}'")).await;
        let drawn = driver.js(&format!("return document.querySelectorAll('{table} tbody tr').length")).await;
        assert_eq!(drawn, json!(rows), "{view}: one page of rows");
        let at: u64 = driver.js("return document.body.dataset.renderedAt").await.as_str().unwrap().parse().unwrap();
        println!("dashboard {view}: drawn {at} ms after navigation");
        assert!(at <= 500, "{view} drawn {at} ms after navigation (limit 500 ms)");
        if view == "/releases" {
            let pager = driver.js("return document.querySelector('.pager').textContent").await;
            assert!(pager.as_str().unwrap().contains("page 1 of 4 (200)"), "{pager}");
        }
    }
    driver.quit().await;
}
