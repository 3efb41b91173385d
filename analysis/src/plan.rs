//! Findings, the exit code they imply, and the deterministic report: findings sorted by what
//! they are about (never by where the statement happened to be), summary counts, and a plan
//! hash over the location-free body, so reordering independent statements changes nothing
//! but the reported locations.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::Schema;
use crate::sql::{Blocked, Dialect};

/// A place in an input file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    /// File name as given.
    pub file: String,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A tenant-isolation violation: the release is blocked.
    Blocking,
    /// Breaks readers of cached data: needs a release (new generations).
    Breaking,
    /// May break readers or the migration itself: needs a release and a look.
    Risky,
    /// Safe for cached data.
    Safe,
}

/// One classified change or violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable code, e.g. `column_dropped`.
    pub code: &'static str,
    /// Severity.
    pub severity: Severity,
    /// Table.
    pub table: Option<String>,
    /// Column (or enum value, policy, constraint).
    pub column: Option<String>,
    /// Where.
    pub location: Location,
    /// One sentence of why.
    pub message: String,
}

impl Finding {
    pub(crate) fn new(
        code: &'static str,
        severity: Severity,
        table: Option<&str>,
        column: Option<&str>,
        location: &Location,
        message: String,
    ) -> Finding {
        Finding {
            code,
            severity,
            table: table.map(str::to_owned),
            column: column.map(str::to_owned),
            location: location.clone(),
            message,
        }
    }
}

/// Exit code: nothing a release needs.
pub const EXIT_SAFE: i32 = 0;
/// Exit code: changes that break cached data; release them (new generations).
pub const EXIT_NEEDS_RELEASE: i32 = 1;
/// Exit code: blocked (isolation violations, unparsable or unsupported input).
pub const EXIT_BLOCKED: i32 = 2;

/// What an analysis concludes, and so what `edgegen plan` exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing a release needs ([`EXIT_SAFE`]).
    Safe,
    /// Changes that break cached data: release them ([`EXIT_NEEDS_RELEASE`]).
    NeedsRelease,
    /// Isolation violations, unparsable or unsupported input ([`EXIT_BLOCKED`]).
    Blocked,
}

impl Verdict {
    /// The exit code `edgegen plan` returns for this verdict.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Safe => EXIT_SAFE,
            Verdict::NeedsRelease => EXIT_NEEDS_RELEASE,
            Verdict::Blocked => EXIT_BLOCKED,
        }
    }

    /// The verdict's wire name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Safe => "safe",
            Verdict::NeedsRelease => "needs_release",
            Verdict::Blocked => "blocked",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of an analysis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Input dialect.
    pub dialect: Dialect,
    /// The conclusion.
    pub verdict: Verdict,
    /// The exit code the CLI returns (`verdict.exit_code()`, kept in the JSON report).
    pub exit_code: i32,
    /// Counts per severity.
    pub summary: Summary,
    /// Sorted findings.
    pub findings: Vec<Finding>,
    /// Why the analysis was blocked before any finding could be made, if it was.
    pub blocked: Option<String>,
    /// SHA-256 over the location-free, sorted findings: identical inputs (and inputs that
    /// differ only in the order of independent statements) give identical hashes.
    pub plan_hash: String,
}

/// Counts per severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Blocking findings.
    pub blocking: usize,
    /// Breaking findings.
    pub breaking: usize,
    /// Risky findings.
    pub risky: usize,
    /// Safe findings.
    pub safe: usize,
}

/// Builds the report from findings (any order) or from a block.
pub fn report(dialect: Dialect, outcome: Result<Vec<Finding>, Blocked>) -> Report {
    let (mut findings, blocked) = match outcome {
        Ok(f) => (f, None),
        Err(b) => (Vec::new(), Some(b.to_string())),
    };
    findings.sort_by(|a, b| {
        (&a.table, &a.column, a.code, &a.message, &a.location).cmp(&(
            &b.table,
            &b.column,
            b.code,
            &b.message,
            &b.location,
        ))
    });
    findings.dedup_by(|a, b| a.code == b.code && a.table == b.table && a.column == b.column && a.message == b.message);
    let mut summary = Summary::default();
    for f in &findings {
        match f.severity {
            Severity::Blocking => summary.blocking += 1,
            Severity::Breaking => summary.breaking += 1,
            Severity::Risky => summary.risky += 1,
            Severity::Safe => summary.safe += 1,
        }
    }
    let verdict = if blocked.is_some() || summary.blocking > 0 {
        Verdict::Blocked
    } else if summary.breaking + summary.risky > 0 {
        Verdict::NeedsRelease
    } else {
        Verdict::Safe
    };
    let exit_code = verdict.exit_code();
    let body: Vec<_> = findings
        .iter()
        .map(|f| serde_json::json!({"code": f.code, "severity": f.severity, "table": f.table, "column": f.column, "message": f.message}))
        .collect();
    let hashed = serde_json::json!({"dialect": dialect, "blocked": blocked, "findings": body}).to_string();
    let plan_hash = format!("sha256:{}", hex::encode(Sha256::digest(hashed.as_bytes())));
    Report { dialect, verdict, exit_code, summary, findings, blocked, plan_hash }
}

/// The schemas before and after a release given as a base plus migrations: `before` is the
/// base; `after` applies the migrations (in order) onto it and records only their renames,
/// so the diff sees exactly what the migrations changed.
///
/// # Errors
/// [`Blocked`] at the first statement that cannot be parsed or applied.
pub fn migrated(
    base: &[(String, String)],
    migrations: &[(String, String)],
    dialect: Dialect,
) -> Result<(Schema, Schema), Blocked> {
    let before = schema_from(base, dialect)?;
    let mut after = before.clone();
    after.table_renames.clear();
    after.column_renames.clear();
    for (name, sql) in migrations {
        after.apply_all(&crate::sql::parse(name, sql, dialect)?)?;
    }
    Ok((before, after))
}

/// Builds a schema from files applied in order.
///
/// # Errors
/// [`Blocked`] at the first statement that cannot be parsed or applied.
pub fn schema_from(files: &[(String, String)], dialect: Dialect) -> Result<Schema, Blocked> {
    let mut schema = Schema::default();
    for (name, sql) in files {
        schema.apply_all(&crate::sql::parse(name, sql, dialect)?)?;
    }
    Ok(schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renames belong to the migrations, whatever their file names (one named like the base
    /// included); renames inside the base are not part of the release.
    #[test]
    fn migrated_records_only_the_migrations_renames() {
        let base =
            [("schema.sql".to_owned(), "CREATE TABLE a (x int); ALTER TABLE a RENAME COLUMN x TO y;".to_owned())];
        let migrations = [("schema.sql".to_owned(), "ALTER TABLE a RENAME COLUMN y TO z;".to_owned())];
        let (before, after) = migrated(&base, &migrations, Dialect::Postgres).unwrap();
        assert!(before.tables["a"].columns.contains_key("y"));
        let renames: Vec<(&str, &str)> =
            after.column_renames.iter().map(|r| (r.from.as_str(), r.to.as_str())).collect();
        assert_eq!(renames, [("y", "z")]);
    }
}
