//! The contract fixtures in `testdata/contract_cases.toml`: one case per construct, with the
//! expected verdict each way and the distinct change codes; refused documents with their side and
//! JSON pointer.

use edgegen_analysis::contract::{Side, Verdict, compare, compatibility};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct File {
    case: Vec<Case>,
    refused: Vec<Refused>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    old: String,
    new: String,
    backward: String,
    forward: String,
    codes: Vec<String>,
}

#[derive(Deserialize)]
struct Refused {
    name: String,
    old: String,
    new: String,
    side: String,
    pointer: String,
    contains: String,
}

fn load() -> File {
    let path = format!("{}/testdata/contract_cases.toml", env!("CARGO_MANIFEST_DIR"));
    toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn word(v: Verdict) -> &'static str {
    match v {
        Verdict::Compatible => "ok",
        Verdict::Breaking => "break",
        Verdict::Unknown => "unknown",
    }
}

fn json(name: &str, text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn contract_cases() {
    let file = load();
    let mut failures = Vec::new();
    for c in &file.case {
        let changes = match compare(&json(&c.name, &c.old), &json(&c.name, &c.new)) {
            Ok(changes) => changes,
            Err(e) => {
                failures.push(format!("{}: {e}", c.name));
                continue;
            }
        };
        let v = compatibility(&changes);
        let mut codes: Vec<&str> = changes.iter().map(|c| c.code).collect();
        codes.sort_unstable();
        codes.dedup();
        if (word(v.backward), word(v.forward)) != (c.backward.as_str(), c.forward.as_str()) || codes != c.codes {
            failures.push(format!(
                "{}: expected {}/{} {:?}, got {}/{} {:?}",
                c.name,
                c.backward,
                c.forward,
                c.codes,
                word(v.backward),
                word(v.forward),
                changes
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), file.case.len(), failures.join("\n"));
}

#[test]
fn refused_documents_name_their_side_and_pointer() {
    for r in load().refused {
        let err = compare(&json(&r.name, &r.old), &json(&r.name, &r.new)).expect_err(&r.name);
        let side = if r.side == "old" { Side::Old } else { Side::New };
        assert_eq!((err.side, err.pointer.as_str()), (side, r.pointer.as_str()), "{}: {err}", r.name);
        assert!(err.message.contains(&r.contains), "{}: {err}", r.name);
    }
}
