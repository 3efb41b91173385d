//! The `edgegen` binary's offline commands.

use std::process::Command;

use serde_json::Value;

fn edgegen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edgegen"))
}

/// `edgegen key --json` derives exactly the keys pinned in the shared vectors.
#[test]
fn key_matches_every_shared_vector() {
    let vectors: Value = serde_json::from_str(include_str!("../../../shared/testdata/vectors.json")).unwrap();
    for case in vectors["cache_keys"].as_array().unwrap() {
        let input = &case["input"];
        let mut target = input["path"].as_str().unwrap().to_owned();
        if let Some(q) = input["query"].as_str() {
            target = format!("{target}?{q}");
        }
        let mut cmd = edgegen();
        cmd.args(["key", "--json", "--tenant", input["tenant"].as_str().unwrap()])
            .args(["--schema", input["schema_version"].as_str().unwrap()])
            .args(["--contract", input["contract_hash"].as_str().unwrap()])
            .args(["--generation", &input["generation"].to_string()])
            .args(["--method", input["method"].as_str().unwrap()]);
        for pair in input["vary"].as_array().into_iter().flatten() {
            let name = pair[0].as_str().unwrap();
            match pair[1].as_str() {
                Some(v) => cmd.arg(format!("--vary={name}={v}")),
                None => cmd.arg(format!("--vary={name}")),
            };
        }
        let out = cmd.arg("--").arg(&target).output().unwrap();
        assert!(out.status.success(), "{}: {}", case["name"], String::from_utf8_lossy(&out.stderr));
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(got["key"], case["key"], "{}", case["name"]);
        assert_eq!(got["path"], case["path"], "{}", case["name"]);
    }
}

#[test]
fn invalid_input_exits_2_naming_the_field() {
    let out = edgegen()
        .args(["key", "--tenant", "acme", "--schema", "1.8", "--contract", "sha256:00", "--generation", "1", "/"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("schema_version: must be MAJOR.MINOR.PATCH"));
}

#[test]
fn client_commands_without_a_token_exit_2() {
    let out = edgegen().args(["tenant", "list"]).env_remove("EDGEGEN_ADMIN_TOKEN").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("EDGEGEN_ADMIN_TOKEN is not set"));
}

mod against_a_server {
    use std::net::SocketAddr;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use edgegen_tests::process::{ChildGuard, free_port};

    use crate::support::{ADMIN, EDGE, MANIFEST_KEY, contract};

    fn serve(dir: &std::path::Path) -> (ChildGuard, SocketAddr) {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgegen"));
        cmd.args(["serve", "--listen", &addr.to_string(), "--data-dir"])
            .arg(dir)
            .env("EDGEGEN_ADMIN_TOKEN", ADMIN)
            .env("EDGEGEN_EDGE_TOKEN", EDGE)
            .env("EDGEGEN_MANIFEST_KEY", MANIFEST_KEY);
        let mut child = ChildGuard::spawn("edgegen serve", cmd, &dir.join("serve.log")).unwrap();
        child.wait_for_port(addr, Duration::from_secs(30)).unwrap();
        (child, addr)
    }

    fn edgegen(addr: SocketAddr, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_edgegen"))
            .args(args)
            .env("EDGEGEN_URL", format!("http://{addr}"))
            .env("EDGEGEN_ADMIN_TOKEN", ADMIN)
            .output()
            .unwrap()
    }

    /// `edgegen tenant add` of tenant acme (schema 1.8.2, contract 1).
    fn add_acme(addr: SocketAddr) -> std::process::Output {
        let c1 = contract(1);
        edgegen(
            addr,
            &[
                "tenant",
                "add",
                "--id",
                "acme",
                "--host",
                "acme.test",
                "--schema-version",
                "1.8.2",
                "--contract-hash",
                &c1,
            ],
        )
    }

    fn ack(addr: SocketAddr, pop: &str, tenant: &str, generation: u64) {
        // A PoP names itself when it fetches the manifest; only then is its ack accepted.
        let fetched = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "-H", &format!("authorization: Bearer {EDGE}")])
            .args(["-H", &format!("edgegen-pop: {pop}"), &format!("http://{addr}/v1/edge/manifests/{tenant}")])
            .status();
        assert!(fetched.map(|s| s.success()).unwrap_or(false), "fetching the manifest failed");
        let body = format!(r#"{{"pop":"{pop}","tenant":"{tenant}","generation":{generation},"observed_at":1}}"#);
        let out = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "-H", &format!("authorization: Bearer {EDGE}")])
            .args(["-H", "content-type: application/json", "-d", &body, &format!("http://{addr}/v1/edge/acks")])
            .status();
        // curl is on every machine this runs on; fall back to a clear failure if not.
        assert!(out.map(|s| s.success()).unwrap_or(false), "posting an ack failed");
    }

    /// `release --wait` exits 3 when live PoPs do not acknowledge in time, 0 once they do,
    /// and `tenant`, `status`, `rollback` work against the real server.
    #[test]
    fn release_wait_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, addr) = serve(dir.path());
        let out = add_acme(addr);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        ack(addr, "p1", "acme", 1); // p1 is live

        let c2 = contract(2);
        let started = Instant::now();
        let out = edgegen(
            addr,
            &[
                "release",
                "--tenants",
                "acme",
                "--schema-version",
                "1.8.3",
                "--contract-hash",
                &c2,
                "--wait",
                "--timeout",
                "1",
            ],
        );
        assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("did not converge within 1.0 s (0/1 live PoPs acknowledged)")
        );

        // The PoP acknowledges generation 3 while the next release waits.
        let waiter = std::thread::spawn(move || {
            edgegen(
                addr,
                &[
                    "--json",
                    "release",
                    "--tenants",
                    "acme",
                    "--schema-version",
                    "1.8.4",
                    "--contract-hash",
                    &contract(3),
                    "--wait",
                    "--timeout",
                    "20",
                ],
            )
        });
        std::thread::sleep(Duration::from_millis(500));
        ack(addr, "p1", "acme", 3);
        let out = waiter.join().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["release"]["status"], "converged");
        assert_eq!(report["convergence"]["acked"], 1);

        // --plan-only changes nothing and exits with the analysis code.
        let files = tempfile::tempdir().unwrap();
        let (a, b) = (files.path().join("a.sql"), files.path().join("b.sql"));
        std::fs::write(&a, "CREATE TABLE users (tenant_id uuid NOT NULL, id bigint, PRIMARY KEY (tenant_id, id));")
            .unwrap();
        std::fs::write(
            &b,
            "CREATE TABLE users (tenant_id uuid NOT NULL, id bigint, x int NOT NULL, PRIMARY KEY (tenant_id, id));",
        )
        .unwrap();
        let plan_args = ["release", "--plan-only", "--tenants", "acme", "--schema-version", "1.9.0", "--contract-hash"];
        let c4 = contract(4);
        let mut args: Vec<&str> = plan_args.to_vec();
        args.extend([c4.as_str(), "--schema-from", a.to_str().unwrap(), "--schema-to", b.to_str().unwrap()]);
        let out = edgegen(addr, &args);
        // The files enable no row-level security: the isolation lint blocks the plan.
        assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stdout).contains("rls_not_enabled"));
        let out = edgegen(addr, &["--json", "tenant", "show", "acme"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"generation\": 3"), "a plan moves nothing");

        let out = edgegen(addr, &["status", "rel-2"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("release rel-2 (release): converged"));
        let out = edgegen(addr, &["rollback", "rel-2"]);
        assert!(out.status.success());
        let out = edgegen(addr, &["rollback", "rel-2"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("already rolled back by rel-3 (conflict, HTTP 409)"));
    }

    /// `edgegen` with the coordinator given by `--url` (no `EDGEGEN_URL` in the environment).
    fn edgegen_url(addr: SocketAddr, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_edgegen"))
            .arg("--url")
            .arg(format!("http://{addr}"))
            .args(args)
            .env_remove("EDGEGEN_URL")
            .env("EDGEGEN_ADMIN_TOKEN", ADMIN)
            .output()
            .unwrap()
    }

    fn release_acme(addr: SocketAddr, version: &str, contract_byte: u8) -> String {
        let c = contract(contract_byte);
        let out = edgegen_url(
            addr,
            &["--json", "release", "--tenants", "acme", "--schema-version", version, "--contract-hash", &c],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let release: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        release["id"].as_str().unwrap().to_owned()
    }

    /// `status --watch` follows a release per PoP with the exit codes of `release --wait`:
    /// 3 on timeout, 0 once every live PoP acknowledged, 4 when it is rolled back meanwhile.
    /// Every call finds the coordinator through `--url` alone.
    #[test]
    fn status_watch_exit_codes_with_url_flag() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, addr) = serve(dir.path());
        let c1 = contract(1);
        let out = edgegen_url(
            addr,
            &[
                "tenant",
                "add",
                "--id",
                "acme",
                "--host",
                "acme.test",
                "--schema-version",
                "1.8.2",
                "--contract-hash",
                &c1,
            ],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        ack(addr, "p1", "acme", 1);
        ack(addr, "p2", "acme", 1);
        let first = release_acme(addr, "1.8.3", 2);
        ack(addr, "p1", "acme", 2);

        let out = edgegen_url(addr, &["status", &first, "--watch", "--timeout", "1"]);
        assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
        let progress = String::from_utf8_lossy(&out.stderr);
        assert!(progress.contains("1/2 PoPs acked"), "{progress}");
        assert!(progress.contains("p1") && progress.contains("acked after"), "per-PoP lines: {progress}");
        assert!(progress.contains("p2") && progress.contains("pending"), "per-PoP lines: {progress}");

        let watch = {
            let first = first.clone();
            std::thread::spawn(move || edgegen_url(addr, &["status", &first, "--watch", "--timeout", "20"]))
        };
        std::thread::sleep(Duration::from_millis(400));
        ack(addr, "p2", "acme", 2);
        let out = watch.join().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("2/2 live PoPs acked"));

        let second = release_acme(addr, "1.8.4", 3);
        let watch = {
            let second = second.clone();
            std::thread::spawn(move || edgegen_url(addr, &["status", &second, "--watch", "--timeout", "20"]))
        };
        std::thread::sleep(Duration::from_millis(400));
        assert!(edgegen_url(addr, &["rollback", &second]).status.success());
        let out = watch.join().unwrap();
        assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("was rolled_back while waiting"));
    }

    /// SIGTERM drains and exits 0; the data survives for the next start.
    #[test]
    fn sigterm_shuts_down_gracefully() {
        let dir = tempfile::tempdir().unwrap();
        let (server, addr) = serve(dir.path());
        let out = add_acme(addr);
        assert!(out.status.success());
        let pid = server.pid().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let mut server = server;
        let status = server.wait_timeout(Duration::from_secs(10)).expect("exited after SIGTERM");
        assert!(status.success(), "exit status {status}");
        assert!(server.log_tail(5).contains("shut down"));
        let (_again, addr) = serve(dir.path());
        let out = edgegen(addr, &["--json", "tenant", "show", "acme"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"generation\": 1"));
    }
}

mod analysis {
    use std::process::Command;

    use serde_json::Value;

    const FENCED: &str = "CREATE TABLE users (tenant_id uuid NOT NULL, id bigint, PRIMARY KEY (tenant_id, id));
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY p ON users USING (tenant_id = current_setting('app.tenant')::uuid);
";

    fn run(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_edgegen")).current_dir(dir).args(args).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[test]
    fn plan_exit_codes_on_schema_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("old.sql"), FENCED).unwrap();
        std::fs::write(
            p.join("nullable.sql"),
            FENCED.replace("PRIMARY KEY (tenant_id, id));", "bio text, PRIMARY KEY (tenant_id, id));"),
        )
        .unwrap();
        std::fs::create_dir(p.join("migrations")).unwrap();
        std::fs::write(
            p.join("migrations/001.sql"),
            "ALTER TABLE users ADD COLUMN encryption_key_version integer NOT NULL;",
        )
        .unwrap();
        std::fs::write(p.join("leaky.sql"), format!("{FENCED}CREATE TABLE audit (id bigint PRIMARY KEY);")).unwrap();
        std::fs::write(p.join("garbage.sql"), "DROP EVERYTHING;").unwrap();

        assert_eq!(run(p, &["plan", "--from", "old.sql", "--to", "nullable.sql"]).0, 0, "a nullable column is safe");
        let (code, out) = run(p, &["--json", "plan", "--from", "old.sql", "--to", "migrations"]);
        assert_eq!(code, 1, "{out}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["findings"][0]["code"], "not_null_column_added_without_default");
        assert_eq!(report["findings"][0]["location"]["file"], "migrations/001.sql");
        let (code, out) = run(p, &["plan", "--from", "old.sql", "--to", "leaky.sql"]);
        assert_eq!(code, 2, "isolation violations block: {out}");
        assert!(out.contains("tenant_column_missing"));
        std::fs::write(p.join("edgegen.toml"), "[analysis]\nglobal_tables = [\"audit\"]\n").unwrap();
        assert_eq!(run(p, &["plan", "--from", "old.sql", "--to", "leaky.sql", "--config", "edgegen.toml"]).0, 0);
        let (code, out) = run(p, &["plan", "--from", "old.sql", "--to", "garbage.sql"]);
        assert_eq!(code, 2);
        assert!(out.contains("blocked: garbage.sql:1:1"), "{out}");
        assert_eq!(run(p, &["plan", "--from", "old.sql", "--to", "missing.sql"]).0, 2);
        assert_eq!(
            run(p, &["plan", "--from", "old.sql", "--to", "old.sql", "--contract-from", "a.json"]).0,
            2,
            "both contract flags or none"
        );
        let v1 = r#"{"title":"UserProfile","type":"object","properties":{"id":{"type":"string"}},"required":["id"]}"#;
        let v2 = r#"{"title":"UserProfile","type":"object","properties":{"id":{"type":"string"},"ekv":{"type":"integer"}},"required":["id","ekv"]}"#;
        let v3 = r#"{"title":"UserProfile","type":"object","properties":{"id":{"type":"integer"}},"required":["id"]}"#;
        std::fs::write(p.join("v1.json"), v1).unwrap();
        std::fs::write(p.join("v2.json"), v2).unwrap();
        std::fs::write(p.join("v3.json"), v3).unwrap();
        std::fs::write(p.join("bad.json"), "{\n  \"title\": }").unwrap();
        let contract = |to: &str| {
            run(
                p,
                &[
                    "--json",
                    "plan",
                    "--from",
                    "old.sql",
                    "--to",
                    "old.sql",
                    "--contract-from",
                    "v1.json",
                    "--contract-to",
                    to,
                ],
            )
        };
        let (code, out) = contract("v2.json");
        assert_eq!(code, 1, "a required field added breaks old cached objects only: {out}");
        assert!(
            out.contains("UserProfile.ekv: backward: required by the new contract, absent from the old one (backward: breaking, forward: compatible"),
            "{out}"
        );
        let (code, out) = contract("v3.json");
        assert_eq!(code, 2, "a type change breaks both ways: no rollout path: {out}");
        let (code, out) = contract("bad.json");
        assert_eq!(code, 2);
        assert!(out.contains("bad.json:2:"), "{out}");

        // Deterministic: the same inputs give byte-identical JSON.
        let a = run(p, &["--json", "plan", "--from", "old.sql", "--to", "migrations"]).1;
        let b = run(p, &["--json", "plan", "--from", "old.sql", "--to", "migrations"]).1;
        assert_eq!(a, b);
    }

    /// `--samples DIR`: saved responses validated against the new contract; a tenant's
    /// legacy enum variant is a finding at its file, line and column; `warn` lets it pass.
    #[test]
    fn plan_checks_saved_responses_against_the_new_contract() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("old.sql"), FENCED).unwrap();
        let v = |variants: &str| {
            format!(
                r#"{{"title":"UserProfile","type":"object","properties":{{"id":{{"type":"integer","format":"uint32","minimum":0}},"kind":{{"type":"string","enum":[{variants}]}}}},"required":["id","kind"]}}"#
            )
        };
        std::fs::write(p.join("v1.json"), v(r#""V1","V2""#)).unwrap();
        std::fs::write(p.join("v2.json"), v(r#""V1","V2","V3""#)).unwrap();
        std::fs::write(p.join("v3.json"), v(r#""V1","V3""#)).unwrap();
        for (tenant, kind) in [("acme", "V1"), ("beta", "V3"), ("gamma", "V2")] {
            std::fs::create_dir_all(p.join(format!("samples/{tenant}"))).unwrap();
            std::fs::write(
                p.join(format!("samples/{tenant}/user-1.json")),
                format!("{{\n  \"id\": 1,\n  \"kind\": \"{kind}\"\n}}"),
            )
            .unwrap();
        }
        let plan = |to: &str, extra: &[&str]| {
            let mut args = vec![
                "--json",
                "plan",
                "--from",
                "old.sql",
                "--to",
                "old.sql",
                "--contract-from",
                "v1.json",
                "--contract-to",
                to,
                "--samples",
                "samples",
            ];
            args.extend(extra);
            run(p, &args)
        };
        let (code, out) = plan("v2.json", &[]);
        assert_eq!(code, 1, "a variant added breaks old readers only (risky), and every sample is valid: {out}");
        assert!(!out.contains("contract_live_data"), "{out}");
        let (code, out) = plan("v3.json", &[]);
        assert_eq!(code, 2, "{out}");
        let report: Value = serde_json::from_str(&out).unwrap();
        let live: Vec<&Value> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == "contract_live_data_invalid")
            .collect();
        assert_eq!(live.len(), 1, "{out}");
        assert_eq!(live[0]["column"], "gamma");
        assert_eq!(live[0]["location"]["file"], "samples/gamma/user-1.json");
        assert_eq!((live[0]["location"]["line"].as_u64(), live[0]["location"]["column"].as_u64()), (Some(3), Some(11)));
        assert!(live[0]["message"].as_str().unwrap().contains("\"/kind\""), "{out}");
        std::fs::write(
            p.join("warn.toml"),
            "[analysis.live_check]\norigin = \"http://127.0.0.1:1\"\npolicy = \"warn\"\n",
        )
        .unwrap();
        let (_, out) = plan("v3.json", &["--config", "warn.toml"]);
        let report: Value = serde_json::from_str(&out).unwrap();
        let live =
            report["findings"].as_array().unwrap().iter().find(|f| f["code"] == "contract_live_data_invalid").unwrap();
        assert_eq!(live["severity"], "risky");
        assert_eq!(
            run(p, &["plan", "--from", "old.sql", "--to", "old.sql", "--samples", "samples"]).0,
            2,
            "needs the contracts"
        );
    }

    #[test]
    fn plan_lists_the_routes_a_change_affects() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("old.sql"), FENCED).unwrap();
        std::fs::write(p.join("new.sql"), FENCED.replace("id bigint,", "id bigint, ekv integer NOT NULL,")).unwrap();
        std::fs::write(
            p.join("edgegen.toml"),
            "[analysis]\n[[analysis.routes]]\nroute = \"GET /v1/users/{id}\"\nsurrogate_key = \"users\"\ntables = [\"users\"]\n\n\
             [[analysis.routes]]\nroute = \"GET /v1/orders\"\nsurrogate_key = \"orders\"\ntables = [\"orders\"]\n",
        )
        .unwrap();
        let (code, out) = run(p, &["plan", "--from", "old.sql", "--to", "new.sql", "--config", "edgegen.toml"]);
        assert_eq!(code, 1);
        assert!(
            out.contains(
                "affects GET /v1/users/{id} (surrogate key users): not_null_column_added_without_default (users)"
            ),
            "{out}"
        );
        assert!(!out.contains("GET /v1/orders"), "{out}");
        let (_, json) = run(p, &["--json", "plan", "--from", "old.sql", "--to", "new.sql", "--config", "edgegen.toml"]);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["affected_routes"][0]["surrogate_key"], "users");
    }

    #[test]
    fn lint_schema_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("fenced.sql"), FENCED).unwrap();
        std::fs::write(p.join("open.sql"), "CREATE TABLE users (tenant_id uuid, id bigint PRIMARY KEY);").unwrap();
        assert_eq!(run(p, &["lint-schema", "fenced.sql"]).0, 0);
        let (code, out) = run(p, &["lint-schema", "open.sql"]);
        assert_eq!(code, 2);
        for rule in ["primary_key_without_tenant", "rls_not_enabled", "policy_missing"] {
            assert!(out.contains(rule), "{rule}: {out}");
        }
    }
}

mod surface {
    use std::process::Command;

    fn edgegen(args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_edgegen")).args(args).env_remove("EDGEGEN_URL").output().unwrap()
    }

    /// `--help` shows `--url` next to `EDGEGEN_URL`; a URL without a scheme is invalid input.
    #[test]
    fn url_flag_is_documented_and_checked() {
        let help = String::from_utf8(edgegen(&["--help"]).stdout).unwrap();
        assert!(help.contains("--url <URL>") && help.contains("EDGEGEN_URL"), "{help}");
        let out = Command::new(env!("CARGO_BIN_EXE_edgegen"))
            .args(["--url", "127.0.0.1:1", "tenant", "list"])
            .env("EDGEGEN_ADMIN_TOKEN", "x")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--url: must start with http:// or https://"));
    }

    /// Each shell gets a script that completes the subcommands.
    #[test]
    fn completions_for_bash_zsh_and_fish() {
        for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef edgegen"), ("fish", "complete -c edgegen")] {
            let out = edgegen(&["completions", shell]);
            assert!(out.status.success(), "{shell}");
            let script = String::from_utf8(out.stdout).unwrap();
            assert!(script.contains(marker), "{shell}: {}", &script[..script.len().min(300)]);
            for sub in ["release", "status", "rollback", "completions"] {
                assert!(script.contains(sub), "{shell}: no {sub}");
            }
        }
        assert_eq!(edgegen(&["completions", "powershell"]).status.code(), Some(2));
    }
}
