//! The invariants of ARCHITECTURE.md that a program can check, checked over the source tree
//! (in the style of rust-analyzer's `tidy` tests): where SQL may be spoken, where hashes may
//! be computed, what `shared` may depend on, that every coordinator module says what it
//! owns, and that the repository refers to no document outside itself.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every file under `dir` (relative to the repository) whose name ends with one of `exts`.
fn files(dir: &str, exts: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root().join(dir)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | "node_modules" | "pkg" | ".git") {
                    stack.push(path);
                }
            } else if exts.iter().any(|e| name.ends_with(e)) {
                let rel = path.strip_prefix(root()).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read_to_string(&path).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

/// Files under `dir` containing any of `needles`, minus those `allowed` (path prefixes).
/// Paths into the coordinator's own store module (`store::postgres::…`) are not the driver.
fn offenders(dir: &str, needles: &[&str], allowed: &[&str]) -> Vec<String> {
    files(dir, &[".rs"])
        .into_iter()
        .filter(|(path, text)| {
            let text = text.replace("store::postgres::", "store::");
            needles.iter().any(|n| text.contains(n)) && !allowed.iter().any(|a| path.starts_with(a))
        })
        .map(|(path, _)| path)
        .collect()
}

#[test]
fn only_the_store_speaks_sql_to_the_coordinators_database_and_shards_only_read_tenant_shards() {
    let found = offenders(
        "coordinator/src",
        &[
            "rusqlite",
            "postgres::",
            "use postgres",
            "tokio_postgres",
            "execute_batch(",
            "batch_execute(",
            "prepare_cached(",
        ],
        &["coordinator/src/store/", "coordinator/src/shards.rs"],
    );
    assert!(found.is_empty(), "SQL outside coordinator/src/store/ and shards.rs: {found:?}");
    // shards.rs introspects tenant databases: it never writes.
    let shards = std::fs::read_to_string(root().join("coordinator/src/shards.rs")).unwrap().to_uppercase();
    for write in ["INSERT ", "UPDATE ", "DELETE ", "CREATE ", "DROP ", "ALTER "] {
        let writes = shards.lines().filter(|l| l.contains('"') && l.contains(write)).count();
        assert_eq!(writes, 0, "shards.rs contains a {write}statement");
    }
}

#[test]
fn hashes_are_computed_only_where_architecture_md_lists_them() {
    // Keys, surrogate keys, signatures, probe tokens and contract hashes: `shared`. The
    // coordinator's own digests (no edge derives them): plan hashes, the idempotency request
    // hash (stored; compared by any replica), token digests.
    let found = offenders(
        ".",
        &["Sha256", "sha2::", "Hmac<"],
        &[
            "shared/",
            "analysis/src/plan.rs",
            "coordinator/src/analysis.rs",
            "coordinator/src/domain.rs",
            "coordinator/src/auth.rs",
            "coordinator/tests/it/tidy.rs",
        ],
    );
    assert!(found.is_empty(), "SHA-256 or HMAC outside the places ARCHITECTURE.md lists: {found:?}");
    // A platform hash never derives a persisted or shared value (jitter may use one).
    let platform = offenders(
        ".",
        &["DefaultHasher", "ahash", "RandomState"],
        &["coordinator/src/fastly.rs", "coordinator/tests/it/tidy.rs"],
    );
    assert!(platform.is_empty(), "platform hash in: {platform:?}");
}

#[test]
fn shared_does_no_io_and_depends_on_neither_fastly_nor_tokio() {
    let manifest = std::fs::read_to_string(root().join("shared/Cargo.toml")).unwrap();
    for dep in ["fastly", "tokio", "reqwest", "rusqlite"] {
        assert!(!manifest.lines().any(|l| l.trim_start().starts_with(dep)), "shared depends on {dep}");
    }
    // utoipa (the OpenAPI schemas) only behind the `openapi` feature, so the edge and the
    // JavaScript build never link it.
    for line in manifest.lines().filter(|l| l.trim_start().starts_with("utoipa")) {
        assert!(line.contains("optional = true"), "shared depends on utoipa without the openapi feature: {line}");
    }
    let io = offenders("shared/src", &["std::fs", "std::net", "SystemTime::now", "Instant::now", "std::env::var"], &[]);
    assert!(io.is_empty(), "I/O or clock reads in shared: {io:?}");
}

#[test]
fn every_coordinator_module_says_what_it_owns() {
    let missing: Vec<String> = files("coordinator/src", &[".rs"])
        .into_iter()
        .filter(|(path, text)| !path.ends_with("main.rs") && !text.trim_start().starts_with("//!"))
        .map(|(path, _)| path)
        .collect();
    assert!(missing.is_empty(), "modules without a //! header: {missing:?}");
}

#[test]
fn the_repository_refers_to_no_document_outside_it() {
    let design = ["DESIGN", ".md"].concat();
    let found: Vec<String> = [".rs", ".md", ".toml", ".mjs", ".js", ".sh"]
        .iter()
        .flat_map(|ext| files(".", &[ext]))
        .filter(|(_, text)| text.contains(&design))
        .map(|(path, _)| path)
        .collect();
    assert!(found.is_empty(), "references to {design}, which is not in the repository: {found:?}");
}
