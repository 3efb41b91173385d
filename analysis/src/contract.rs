//! API-contract compatibility between the JSON Schema documents before and after a release
//! (everything `schemars` 1.x emits, draft 2020-12 and draft-07), for both directions:
//!
//! - **backward**: a new reader meets an object cached under the old contract (every value
//!   the old contract admits must be readable under the new one);
//! - **forward**: an old reader meets an object produced under the new contract.
//!
//! A release (new generations) takes care of backward breaks: old objects are never served
//! to new readers. Forward breaks are what an origin mid-rollout produces. A change that
//! breaks both ways has no rollout path. A keyword the analysis does not understand, in a
//! subschema whose producer side differs, gives an *unknown* verdict: blocking.
//!
//! [`schema`] normalises subschemas (refs, combinators, types, formats); [`compat`] is the
//! inclusion check, run once per direction; this module merges both runs into findings,
//! one per contract path, each with its backward and forward verdict and JSON pointers into
//! both documents.

mod compat;
mod schema;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

pub use compat::Verdict;
pub use schema::{ContractError, Side, integer_format_bounds};

use compat::{Break, Check};
use schema::Doc;

/// One contract change, at one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContractChange {
    /// Stable code, e.g. `contract_required_property_added`.
    pub code: &'static str,
    /// Where, e.g. `UserProfile.plan` (`[]` array items, `[kind=Pro]` a tagged variant,
    /// `.*` map values).
    pub path: String,
    /// What changed, for each direction that breaks.
    pub description: String,
    /// Can a new reader read old objects?
    pub backward: Verdict,
    /// Can an old reader read new objects?
    pub forward: Verdict,
    /// JSON pointer to the subschema in the old contract.
    pub old_pointer: String,
    /// JSON pointer to the subschema in the new contract.
    pub new_pointer: String,
}

impl ContractChange {
    /// The plan severity: breaking both ways, or unknown either way, is `blocking` (no
    /// rollout path, or no verdict); backward-only `breaking` (a release handles it);
    /// forward-only `risky` (origins mid-rollout produce objects old readers cannot read).
    pub fn severity(&self) -> crate::Severity {
        use crate::Severity;
        match (self.backward, self.forward) {
            (Verdict::Unknown, _) | (_, Verdict::Unknown) | (Verdict::Breaking, Verdict::Breaking) => {
                Severity::Blocking
            }
            (Verdict::Breaking, _) => Severity::Breaking,
            (_, Verdict::Breaking) => Severity::Risky,
            _ => Severity::Safe,
        }
    }
}

/// The verdict of a whole comparison, per direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Compatibility {
    /// New readers, old objects.
    pub backward: Verdict,
    /// Old readers, new objects.
    pub forward: Verdict,
}

/// The overall verdict of a list of changes.
pub fn compatibility(changes: &[ContractChange]) -> Compatibility {
    Compatibility {
        backward: changes.iter().map(|c| c.backward).max().unwrap_or(Verdict::Compatible),
        forward: changes.iter().map(|c| c.forward).max().unwrap_or(Verdict::Compatible),
    }
}

/// Compares two contract schemas; changes are sorted by path.
///
/// # Errors
/// [`ContractError`] (with the contract and a JSON pointer) for a document that is not a
/// JSON Schema, malformed keywords, or `$ref`s that are dangling or not local.
pub fn compare(old: &Value, new: &Value) -> Result<Vec<ContractChange>, ContractError> {
    let old_doc = Doc::new(Side::Old, old)?;
    let new_doc = Doc::new(Side::New, new)?;
    let root = new.get("title").or_else(|| old.get("title")).and_then(Value::as_str).unwrap_or("$").to_owned();
    let backward = run(&old_doc, &new_doc, &root)?;
    let forward = run(&new_doc, &old_doc, &root)?;

    struct Acc {
        code: &'static str,
        descriptions: Vec<String>,
        backward: Verdict,
        forward: Verdict,
        old_pointer: String,
        new_pointer: String,
    }
    let mut by_path: BTreeMap<String, Acc> = BTreeMap::new();
    for (b, is_backward) in backward.into_iter().map(|b| (b, true)).chain(forward.into_iter().map(|b| (b, false))) {
        let (old_pointer, new_pointer) =
            if is_backward { (b.producer_pointer, b.reader_pointer) } else { (b.reader_pointer, b.producer_pointer) };
        let acc = by_path.entry(b.path).or_insert_with(|| Acc {
            code: b.code,
            descriptions: Vec::new(),
            backward: Verdict::Compatible,
            forward: Verdict::Compatible,
            old_pointer,
            new_pointer,
        });
        let direction = if is_backward { "backward" } else { "forward" };
        let d = format!("{direction}: {}", b.description);
        if !acc.descriptions.contains(&d) {
            acc.descriptions.push(d);
        }
        if is_backward {
            acc.backward = acc.backward.max(b.verdict);
        } else {
            acc.forward = acc.forward.max(b.verdict);
        }
        if b.verdict == Verdict::Unknown || rank(b.code) < rank(acc.code) {
            acc.code = b.code;
        }
    }
    Ok(by_path
        .into_iter()
        .map(|(path, a)| ContractChange {
            code: a.code,
            path,
            description: a.descriptions.join("; "),
            backward: a.backward,
            forward: a.forward,
            old_pointer: a.old_pointer,
            new_pointer: a.new_pointer,
        })
        .collect())
}

/// One direction: the deciding pass, then (only if it fails) the reporting pass.
fn run<'a>(producer: &Doc<'a>, reader: &Doc<'a>, root: &str) -> Result<Vec<Break>, ContractError> {
    let mut check = Check::new(producer, reader);
    if check.includes(&[producer.root()], &[reader.root()], root, false)? != Verdict::Compatible {
        check.includes(&[producer.root()], &[reader.root()], root, true)?;
    }
    Ok(check.breaks)
}

/// Which code names a path with several reasons: the most fundamental one.
fn rank(code: &str) -> u8 {
    match code {
        "contract_unknown_keyword" => 0,
        "contract_type_changed" => 1,
        c if c.starts_with("contract_variant") => 2,
        c if c.starts_with("contract_type") => 3,
        c if c.starts_with("contract_became") => 4,
        c if c.contains("property") => 5,
        c if c.starts_with("contract_enum") || c.starts_with("contract_values") => 6,
        c if c.starts_with("contract_format") => 7,
        _ => 8,
    }
}

/// Groups changes by direction for display.
pub fn summary(changes: &[ContractChange]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for c in changes {
        let key = match (c.backward, c.forward) {
            (Verdict::Unknown, _) | (_, Verdict::Unknown) => "unknown",
            (Verdict::Compatible, Verdict::Compatible) => "compatible",
            (Verdict::Breaking, Verdict::Compatible) => "backward_breaking",
            (Verdict::Compatible, Verdict::Breaking) => "forward_breaking",
            (Verdict::Breaking, Verdict::Breaking) => "both_breaking",
        };
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

/// Line and column (1-based) of the value at `pointer` in the JSON `text`; `(1, 1)` when it
/// cannot be found.
pub fn locate(text: &str, pointer: &str) -> (u64, u64) {
    let bytes = text.as_bytes();
    let mut pos = 0;
    let tokens: Vec<String> = pointer.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~")).collect();
    let found = locate_in(bytes, &mut pos, &tokens);
    let at = if found { pos } else { 0 };
    let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let col = at - bytes[..at].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
    (line, col as u64)
}

fn skip_ws(b: &[u8], pos: &mut usize) {
    while *pos < b.len() && b[*pos].is_ascii_whitespace() {
        *pos += 1;
    }
}

/// Reads a JSON string at `pos` (which is at its opening quote); returns it decoded.
fn read_string(b: &[u8], pos: &mut usize) -> Option<String> {
    let start = *pos;
    *pos += 1;
    while *pos < b.len() {
        match b[*pos] {
            b'\\' => *pos += 2,
            b'"' => {
                *pos += 1;
                return serde_json::from_slice(&b[start..*pos]).ok();
            }
            _ => *pos += 1,
        }
    }
    None
}

/// Skips one JSON value at `pos`.
fn skip_value(b: &[u8], pos: &mut usize) {
    skip_ws(b, pos);
    let mut depth = 0usize;
    while *pos < b.len() {
        match b[*pos] {
            b'"' => {
                read_string(b, pos);
                if depth == 0 {
                    return;
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth == 0 {
                    return;
                }
                depth -= 1;
                if depth == 0 {
                    *pos += 1;
                    return;
                }
            }
            b',' | b':' if depth == 0 => return,
            _ => {}
        }
        *pos += 1;
    }
}

fn locate_in(b: &[u8], pos: &mut usize, tokens: &[String]) -> bool {
    skip_ws(b, pos);
    let Some((token, rest)) = tokens.split_first() else { return true };
    match b.get(*pos) {
        Some(b'{') => {
            *pos += 1;
            loop {
                skip_ws(b, pos);
                if b.get(*pos) != Some(&b'"') {
                    return false;
                }
                let key = read_string(b, pos);
                skip_ws(b, pos);
                *pos += 1; // ':'
                if key.as_deref() == Some(token.as_str()) {
                    return locate_in(b, pos, rest);
                }
                skip_value(b, pos);
                skip_ws(b, pos);
                if b.get(*pos) != Some(&b',') {
                    return false;
                }
                *pos += 1;
            }
        }
        Some(b'[') => {
            let Ok(index) = token.parse::<usize>() else { return false };
            *pos += 1;
            for _ in 0..index {
                skip_value(b, pos);
                skip_ws(b, pos);
                if b.get(*pos) != Some(&b',') {
                    return false;
                }
                *pos += 1;
            }
            locate_in(b, pos, rest)
        }
        _ => false,
    }
}

/// Contract changes as plan findings (severity from [`ContractChange::severity`]), each at
/// the line and column of its subschema: in the new file, or the old one when only the old
/// contract has it.
///
/// # Errors
/// [`crate::Blocked`] for invalid JSON (with its position), a document that is not a JSON
/// Schema, or an incomparable subschema — at the file and pointer it is in.
pub fn findings(old: (&str, &str), new: (&str, &str)) -> Result<Vec<crate::plan::Finding>, crate::Blocked> {
    use crate::plan::{Finding, Location};
    let parse = |(file, text): (&str, &str)| -> Result<Value, crate::Blocked> {
        serde_json::from_str(text).map_err(|e| crate::Blocked {
            location: Location { file: file.to_owned(), line: e.line() as u64, column: e.column() as u64 },
            message: format!("invalid JSON: {e}"),
        })
    };
    let (o, n) = (parse(old)?, parse(new)?);
    let at = |side: Side, pointer: &str| {
        let (file, text) = if side == Side::Old { old } else { new };
        let (line, column) = locate(text, pointer);
        Location { file: file.to_owned(), line, column }
    };
    let changes = compare(&o, &n).map_err(|e| crate::Blocked {
        location: at(e.side, &e.pointer),
        message: format!("contract schema at {:?}: {}", e.pointer, e.message),
    })?;
    Ok(changes
        .into_iter()
        .map(|c| {
            let severity = c.severity();
            let word = |v: Verdict| match v {
                Verdict::Compatible => "compatible",
                Verdict::Breaking => "breaking",
                Verdict::Unknown => "unknown",
            };
            let message = format!(
                "{}: {} (backward: {}, forward: {}; old {:?}, new {:?})",
                c.path,
                c.description,
                word(c.backward),
                word(c.forward),
                c.old_pointer,
                c.new_pointer
            );
            let location = if c.new_pointer.is_empty() && !c.old_pointer.is_empty() {
                at(Side::Old, &c.old_pointer)
            } else {
                at(Side::New, &c.new_pointer)
            };
            Finding { code: c.code, severity, table: None, column: Some(c.path), location, message }
        })
        .collect())
}

#[cfg(test)]
mod tests;
