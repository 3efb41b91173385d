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
