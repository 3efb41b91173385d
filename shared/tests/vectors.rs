//! Checks every known-answer vector in `testdata/vectors.json` (the same file the Node test of
//! the JavaScript bindings checks), so native, wasm and JavaScript agree byte for byte.
//!
//! `EDGEGEN_BLESS=1 cargo test -p edgegen-shared --test vectors` rewrites the outputs from
//! this build: only for a deliberate, versioned change of an encoding.

use edgegen_shared::contract::{canonical_json, contract_hash};
use edgegen_shared::key::KeyInput;
use edgegen_shared::lease::{self, Lease};
use edgegen_shared::manifest::{self, Manifest};
use edgegen_shared::metadata::ObjectMetadata;
use edgegen_shared::probe;
use edgegen_shared::surrogate;
use edgegen_shared::{Generation, SecretKey, TenantId};
use serde_json::{Value, json};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/vectors.json");

struct Checker {
    bless: bool,
    failures: Vec<String>,
    cases: usize,
}

impl Checker {
    /// Compares `case[field]` with `actual`, or stores `actual` when blessing.
    fn check(&mut self, case: &mut Value, field: &str, actual: Value) {
        if self.bless {
            case[field] = actual;
        } else if case[field] != actual {
            self.failures.push(format!("{:?}: {field}: expected {}, got {actual}", case["name"], case[field]));
        }
    }

    fn cases<'a>(&mut self, doc: &'a mut Value, group: &str) -> &'a mut Vec<Value> {
        let cases = doc[group].as_array_mut().unwrap_or_else(|| panic!("vectors.json: {group} is not a list"));
        self.cases += cases.len();
        cases
    }
}

fn secret(case: &Value) -> SecretKey {
    SecretKey::new("vector key", case["key"].as_str().expect("key is a string")).expect("vector key is long enough")
}

fn text(case: &Value, field: &str) -> String {
    case[field].as_str().unwrap_or_else(|| panic!("{:?}: {field} is not a string", case["name"])).to_owned()
}

fn tenant(case: &Value) -> TenantId {
    TenantId::new(text(case, "tenant")).expect("vector tenant is valid")
}

#[test]
fn known_answer_vectors() {
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    let mut c = Checker { bless: std::env::var("EDGEGEN_BLESS").is_ok_and(|v| v == "1"), failures: vec![], cases: 0 };

    for case in c.cases(&mut doc, "cache_keys") {
        let input: KeyInput = serde_json::from_value(case["input"].clone()).unwrap();
        let (request, key) = input.derive().unwrap_or_else(|e| panic!("{:?}: {e}", case["name"]));
        c.check(case, "path", json!(request.path()));
        c.check(case, "query", json!(request.query()));
        c.check(case, "key", json!(key.to_hex()));
    }

    for case in c.cases(&mut doc, "cache_key_errors") {
        let error = match serde_json::from_value::<KeyInput>(case["input"].clone()) {
            Err(e) => e.to_string(),
            Ok(input) => input.derive().map(|_| String::new()).unwrap_or_else(|e| e.to_string()),
        };
        assert!(!error.is_empty(), "{:?} must fail", case["name"]);
        c.check(case, "error", json!(error));
    }

    for case in c.cases(&mut doc, "surrogate_keys") {
        let generation = Generation(case["generation"].as_u64().unwrap());
        let result = surrogate::object_keys(&tenant(case), generation, case["origin_header"].as_str())
            .and_then(|keys| surrogate::header_value(&keys));
        let result = match result {
            Ok(header) => json!({ "header": header }),
            Err(e) => json!({ "error": e.to_string() }),
        };
        c.check(case, "result", result);
    }

    for case in c.cases(&mut doc, "contract_hashes") {
        let document = text(case, "document");
        let value: Value = serde_json::from_str(&document).unwrap();
        c.check(case, "canonical", json!(canonical_json(&value).unwrap()));
        c.check(case, "hash", json!(contract_hash(&document).unwrap().to_string()));
    }

    for case in c.cases(&mut doc, "manifests") {
        let m: Manifest = serde_json::from_value(case["manifest"].clone()).unwrap();
        let body = m.sign(&secret(case));
        assert_eq!(manifest::verify(body.as_bytes(), &secret(case), &m.tenant).as_ref(), Ok(&m));
        c.check(case, "body", json!(body));
    }

    for case in c.cases(&mut doc, "manifest_rejections") {
        let result = manifest::verify(text(case, "body").as_bytes(), &secret(case), &tenant(case));
        let error = result.expect_err("a rejection vector must be rejected").to_string();
        c.check(case, "error", json!(error));
    }

    for case in c.cases(&mut doc, "leases") {
        let m: Manifest = serde_json::from_value(case["manifest"].clone()).unwrap();
        let number = |field: &str| case[field].as_u64().unwrap_or_else(|| panic!("{field} is not a u64"));
        let lease = Lease::new(&m, number("issued_at"), number("max_age_ms"), number("max_stale_ms"));
        let header = lease.sign(&secret(case));
        let verified = lease::verify(&header, &secret(case), &m, lease.issued_at, 0);
        assert_eq!(verified.as_ref(), Ok(&lease), "{:?}", case["name"]);
        c.check(case, "header", json!(header));
    }

    for case in c.cases(&mut doc, "lease_verifications") {
        let held: Manifest = serde_json::from_value(case["manifest"].clone()).unwrap();
        let (now, skew) = (case["now"].as_u64().unwrap(), case["skew_ms"].as_u64().unwrap());
        let result = match lease::verify(&text(case, "header"), &secret(case), &held, now, skew) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        c.check(case, "result", json!(result));
    }

    for case in c.cases(&mut doc, "probe_tokens") {
        let (now, expires_at) = (case["now"].as_u64().unwrap(), case["expires_at"].as_u64().unwrap());
        let token = probe::mint(&tenant(case), now, expires_at, &secret(case)).unwrap();
        assert!(probe::verify(&token, &tenant(case), now, &secret(case)).is_ok());
        c.check(case, "token", json!(token));
    }

    for case in c.cases(&mut doc, "probe_verifications") {
        let now = case["now"].as_u64().unwrap();
        let result = match probe::verify(&text(case, "token"), &tenant(case), now, &secret(case)) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        c.check(case, "result", json!(result));
    }

    for case in c.cases(&mut doc, "object_metadata") {
        let metadata: ObjectMetadata = serde_json::from_value(case["metadata"].clone()).unwrap();
        let encoded = hex::encode(metadata.encode());
        assert_eq!(ObjectMetadata::decode(&metadata.encode()).as_ref(), Ok(&metadata));
        c.check(case, "encoded", json!(encoded));
    }

    for case in c.cases(&mut doc, "object_metadata_errors") {
        let bytes = hex::decode(text(case, "encoded")).unwrap();
        let error = ObjectMetadata::decode(&bytes).expect_err("an error vector must fail").to_string();
        c.check(case, "error", json!(error));
    }

    if c.bless {
        let mut out = serde_json::to_string_pretty(&doc).unwrap();
        out.push('\n');
        std::fs::write(VECTORS, out).unwrap();
    }
    assert!(c.failures.is_empty(), "{} of {} vectors differ:\n{}", c.failures.len(), c.cases, c.failures.join("\n"));
    assert!(c.cases >= 30, "only {} vectors", c.cases);
}
