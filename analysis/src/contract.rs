//! API-contract compatibility: a parallel walk of the JSON Schema documents before and after
//! (the subset `schemars` emits: objects, `required`, `properties`, `$defs`/`$ref`, enums as
//! `enum` or `oneOf`/`anyOf` of `const`s, nullability, arrays, scalar types,
//! `additionalProperties`), classifying every change for both directions:
//!
//! - **backward**: a new reader meets an object cached under the old contract;
//! - **forward**: an old reader meets an object produced under the new contract.
//!
//! A release (new generations) takes care of backward breaks: old objects are never served
//! to new readers. Forward breaks are what an origin mid-rollout produces. A change that
//! breaks both ways has no rollout path.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Serialize;
use serde_json::Value;

/// One contract change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContractChange {
    /// Stable code, e.g. `contract_required_property_added`.
    pub code: &'static str,
    /// Where, e.g. `UserProfile.plan`.
    pub path: String,
    /// What changed.
    pub description: String,
    /// A new reader can read old objects.
    pub backward_compatible: bool,
    /// An old reader can read new objects.
    pub forward_compatible: bool,
}

/// A schema that cannot be compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("contract schema: {0}")]
pub struct ContractError(pub String);

struct Doc<'a> {
    root: &'a Value,
}

impl<'a> Doc<'a> {
    /// Follows a local `$ref` (`#/$defs/X` or `#/definitions/X`).
    fn resolve(&self, node: &'a Value) -> Result<(&'a Value, Option<String>), ContractError> {
        let Some(r) = node.get("$ref").and_then(Value::as_str) else { return Ok((node, None)) };
        let name = r
            .strip_prefix("#/$defs/")
            .or_else(|| r.strip_prefix("#/definitions/"))
            .ok_or_else(|| ContractError(format!("$ref {r:?} is not a local definition")))?;
        let target = self
            .root
            .get("$defs")
            .and_then(|d| d.get(name))
            .or_else(|| self.root.get("definitions").and_then(|d| d.get(name)))
            .ok_or_else(|| ContractError(format!("$ref {r:?} points to a missing definition")))?;
        Ok((target, Some(name.to_owned())))
    }
}

/// Types a node admits (`null` included for nullable forms).
fn types(node: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    match node.get("type") {
        Some(Value::String(t)) => {
            out.insert(t.clone());
        }
        Some(Value::Array(ts)) => out.extend(ts.iter().filter_map(Value::as_str).map(str::to_owned)),
        _ => {}
    }
    // `anyOf: [X, {"type": "null"}]` is schemars' nullable reference.
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = node.get(key)
            && alts.iter().any(|a| a.get("type").and_then(Value::as_str) == Some("null"))
        {
            out.insert("null".into());
        }
    }
    if out.contains("integer") && out.contains("number") {
        out.remove("integer");
    }
    out
}

/// The enum values a node allows, if it is an enum: `enum`, `const`, or `oneOf`/`anyOf` of
/// constants (unit variants) and single-key objects (data-carrying variants, by key).
fn enum_values(node: &Value) -> Option<BTreeSet<String>> {
    if let Some(Value::Array(vs)) = node.get("enum") {
        return Some(vs.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect());
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(alts)) = node.get(key) {
            let mut values = BTreeSet::new();
            for alt in alts.iter().filter(|a| a.get("type").and_then(Value::as_str) != Some("null")) {
                if let Some(c) = alt.get("const") {
                    values.insert(c.as_str().map_or_else(|| c.to_string(), str::to_owned));
                } else if let Some(Value::Array(vs)) = alt.get("enum") {
                    values.extend(vs.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)));
                } else if let Some(req) = alt.get("required").and_then(Value::as_array)
                    && req.len() == 1
                {
                    values.insert(req[0].as_str().unwrap_or_default().to_owned());
                } else {
                    return None;
                }
            }
            return Some(values);
        }
    }
    None
}

fn string_set(node: &Value, key: &str) -> BTreeSet<String> {
    node.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn closed(node: &Value) -> bool {
    node.get("additionalProperties") == Some(&Value::Bool(false))
}

struct Walker<'a> {
    old: Doc<'a>,
    new: Doc<'a>,
    /// Pairs of definitions already compared: each pair is walked once (cycles end here),
    /// and its findings are reported at the first path that reached it.
    seen: HashSet<(Option<String>, Option<String>)>,
    out: Vec<ContractChange>,
}

impl<'a> Walker<'a> {
    fn push(&mut self, code: &'static str, path: &str, description: String, backward: bool, forward: bool) {
        self.out.push(ContractChange {
            code,
            path: path.to_owned(),
            description,
            backward_compatible: backward,
            forward_compatible: forward,
        });
    }

    fn walk(&mut self, old: &'a Value, new: &'a Value, path: &str) -> Result<(), ContractError> {
        let (old, old_ref) = self.old.resolve(old)?;
        let (new, new_ref) = self.new.resolve(new)?;
        // Nullable references: compare the non-null alternative (nullability is read from
        // the wrapper below).
        let (old_inner, old_inner_ref) = non_null_ref(&self.old, old)?;
        let (new_inner, new_inner_ref) = non_null_ref(&self.new, new)?;
        let key = (old_ref.or(old_inner_ref), new_ref.or(new_inner_ref));
        if (key.0.is_some() || key.1.is_some()) && !self.seen.insert(key) {
            return Ok(());
        }
        let nullable_changed = types(old).contains("null") != types(new).contains("null");
        let became_nullable = types(new).contains("null");
        let (old, new) = (old_inner, new_inner);

        let (old_types, new_types) = (types(old), types(new));
        if !old_types.is_empty() && !new_types.is_empty() && old_types != new_types {
            let only_null_added = new_types.len() == old_types.len() + 1
                && new_types.contains("null")
                && old_types.iter().all(|t| new_types.contains(t));
            let only_null_removed = old_types.len() == new_types.len() + 1
                && old_types.contains("null")
                && new_types.iter().all(|t| old_types.contains(t));
            if only_null_added {
                self.push("contract_became_nullable", path, "may now be null".into(), true, false);
            } else if only_null_removed {
                self.push("contract_became_non_nullable", path, "may no longer be null".into(), false, true);
            } else {
                let show = |t: &BTreeSet<String>| t.iter().cloned().collect::<Vec<_>>().join("|");
                self.push(
                    "contract_type_changed",
                    path,
                    format!("type {} -> {}", show(&old_types), show(&new_types)),
                    false,
                    false,
                );
                return Ok(());
            }
        } else if nullable_changed {
            if became_nullable {
                self.push("contract_became_nullable", path, "may now be null".into(), true, false);
            } else {
                self.push("contract_became_non_nullable", path, "may no longer be null".into(), false, true);
            }
        }

        if let (Some(old_values), Some(new_values)) = (enum_values(old), enum_values(new)) {
            for v in old_values.difference(&new_values) {
                self.push("contract_enum_value_removed", path, format!("enum value {v:?} removed"), false, true);
            }
            for v in new_values.difference(&old_values) {
                self.push("contract_enum_value_added", path, format!("enum value {v:?} added"), true, false);
            }
        }

        let (old_props, new_props) =
            (old.get("properties").and_then(Value::as_object), new.get("properties").and_then(Value::as_object));
        if old_props.is_some() || new_props.is_some() {
            let (old_req, new_req) = (string_set(old, "required"), string_set(new, "required"));
            let names: BTreeSet<&String> = old_props
                .into_iter()
                .flat_map(|m| m.keys())
                .chain(new_props.into_iter().flat_map(|m| m.keys()))
                .collect();
            for name in names {
                let p = format!("{path}.{name}");
                match (old_props.and_then(|m| m.get(name)), new_props.and_then(|m| m.get(name))) {
                    (None, Some(_)) => {
                        let required = new_req.contains(name);
                        let code = if required {
                            "contract_required_property_added"
                        } else {
                            "contract_optional_property_added"
                        };
                        let what = if required { "required" } else { "optional" };
                        self.push(code, &p, format!("{what} property added"), !required, !closed(old));
                    }
                    (Some(_), None) => {
                        let was_required = old_req.contains(name);
                        self.push(
                            "contract_property_removed",
                            &p,
                            "property removed".into(),
                            !closed(new),
                            !was_required,
                        );
                    }
                    (Some(o), Some(n)) => {
                        match (old_req.contains(name), new_req.contains(name)) {
                            (false, true) => self.push(
                                "contract_property_became_required",
                                &p,
                                "became required".into(),
                                false,
                                true,
                            ),
                            (true, false) => self.push(
                                "contract_property_became_optional",
                                &p,
                                "became optional".into(),
                                true,
                                false,
                            ),
                            _ => {}
                        }
                        self.walk(o, n, &p)?;
                    }
                    (None, None) => {}
                }
            }
        }

        if let (Some(oi), Some(ni)) = (old.get("items"), new.get("items")) {
            self.walk(oi, ni, &format!("{path}[]"))?;
        }
        Ok(())
    }
}

/// For `anyOf: [{$ref}, {type: null}]`, the referenced schema and its name (nullability is
/// read from the wrapper).
fn non_null_ref<'a>(doc: &Doc<'a>, node: &'a Value) -> Result<(&'a Value, Option<String>), ContractError> {
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = node.get(key) {
            let non_null: Vec<&Value> =
                alts.iter().filter(|a| a.get("type").and_then(Value::as_str) != Some("null")).collect();
            if non_null.len() == 1 && non_null.len() < alts.len() && non_null[0].get("$ref").is_some() {
                return doc.resolve(non_null[0]);
            }
        }
    }
    Ok((node, None))
}

/// Compares two contract schemas; changes are sorted by path and code.
///
/// # Errors
/// [`ContractError`] for dangling or non-local `$ref`s.
pub fn compare(old: &Value, new: &Value) -> Result<Vec<ContractChange>, ContractError> {
    let root = new.get("title").or_else(|| old.get("title")).and_then(Value::as_str).unwrap_or("$").to_owned();
    let mut w = Walker { old: Doc { root: old }, new: Doc { root: new }, seen: HashSet::new(), out: Vec::new() };
    w.walk(old, new, &root)?;
    let mut out = w.out;
    out.sort_by(|a, b| (&a.path, a.code, &a.description).cmp(&(&b.path, b.code, &b.description)));
    out.dedup();
    Ok(out)
}

/// Groups changes by direction for display.
pub fn summary(changes: &[ContractChange]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for c in changes {
        let key = match (c.backward_compatible, c.forward_compatible) {
            (true, true) => "compatible",
            (false, true) => "backward_breaking",
            (true, false) => "forward_breaking",
            (false, false) => "both_breaking",
        };
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

/// Contract changes as plan findings: breaking both ways is `blocking` (no rollout path),
/// backward-only `breaking` (a release handles it), forward-only `risky` (origins mid-rollout
/// produce objects old readers cannot read), compatible `safe`.
///
/// # Errors
/// [`crate::Blocked`] for invalid JSON (with its position) or an incomparable schema.
pub fn findings(old: (&str, &str), new: (&str, &str)) -> Result<Vec<crate::plan::Finding>, crate::Blocked> {
    use crate::plan::{Finding, Location, Severity};
    let parse = |(file, text): (&str, &str)| -> Result<Value, crate::Blocked> {
        serde_json::from_str(text).map_err(|e| crate::Blocked {
            location: Location { file: file.to_owned(), line: e.line() as u64, column: e.column() as u64 },
            message: format!("invalid JSON: {e}"),
        })
    };
    let (o, n) = (parse(old)?, parse(new)?);
    let at = Location { file: new.0.to_owned(), line: 1, column: 1 };
    let changes = compare(&o, &n).map_err(|e| crate::Blocked { location: at.clone(), message: e.to_string() })?;
    Ok(changes
        .into_iter()
        .map(|c| {
            let severity = match (c.backward_compatible, c.forward_compatible) {
                (false, false) => Severity::Blocking,
                (false, true) => Severity::Breaking,
                (true, false) => Severity::Risky,
                (true, true) => Severity::Safe,
            };
            let word = |ok: bool| if ok { "compatible" } else { "breaking" };
            let message = format!(
                "{}: {} (backward: {}, forward: {})",
                c.path,
                c.description,
                word(c.backward_compatible),
                word(c.forward_compatible)
            );
            Finding { code: c.code, severity, table: None, column: Some(c.path), location: at.clone(), message }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn profile(props: Value, required: &[&str], defs: Value) -> Value {
        json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "UserProfile", "type": "object",
               "properties": props, "required": required, "$defs": defs})
    }

    /// (code, path, backward ok, forward ok)
    #[track_caller]
    fn check(old: Value, new: Value, expected: &[(&str, &str, bool, bool)]) {
        let got: Vec<(&str, String, bool, bool)> = compare(&old, &new)
            .unwrap()
            .into_iter()
            .map(|c| (c.code, c.path, c.backward_compatible, c.forward_compatible))
            .collect();
        let want: Vec<(&str, String, bool, bool)> =
            expected.iter().map(|(c, p, b, f)| (*c, (*p).to_owned(), *b, *f)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn identical_and_reordered_schemas_have_no_change() {
        let a = profile(json!({"id": {"type": "string"}, "age": {"type": "integer"}}), &["id", "age"], json!({}));
        let b = profile(json!({"age": {"type": "integer"}, "id": {"type": "string"}}), &["age", "id"], json!({}));
        check(a, b, &[]);
    }

    #[test]
    fn properties() {
        let base = profile(json!({"id": {"type": "string"}}), &["id"], json!({}));
        let req = profile(json!({"id": {"type": "string"}, "ekv": {"type": "integer"}}), &["id", "ekv"], json!({}));
        check(base.clone(), req.clone(), &[("contract_required_property_added", "UserProfile.ekv", false, true)]);
        check(req.clone(), base.clone(), &[("contract_property_removed", "UserProfile.ekv", true, false)]);
        let opt = profile(json!({"id": {"type": "string"}, "bio": {"type": ["string", "null"]}}), &["id"], json!({}));
        check(base.clone(), opt.clone(), &[("contract_optional_property_added", "UserProfile.bio", true, true)]);
        check(opt, base.clone(), &[("contract_property_removed", "UserProfile.bio", true, true)]);
        let mut closed_old = base.clone();
        closed_old["additionalProperties"] = json!(false);
        let mut closed_new = req.clone();
        closed_new["additionalProperties"] = json!(false);
        check(closed_old, closed_new, &[("contract_required_property_added", "UserProfile.ekv", false, false)]);
    }

    #[test]
    fn required_nullable_and_types() {
        let a = profile(json!({"id": {"type": "string"}, "n": {"type": "string"}}), &["id"], json!({}));
        let b = profile(json!({"id": {"type": "string"}, "n": {"type": "string"}}), &["id", "n"], json!({}));
        check(a.clone(), b.clone(), &[("contract_property_became_required", "UserProfile.n", false, true)]);
        check(b, a, &[("contract_property_became_optional", "UserProfile.n", true, false)]);
        let s = profile(json!({"n": {"type": "string"}}), &[], json!({}));
        let sn = profile(json!({"n": {"type": ["string", "null"]}}), &[], json!({}));
        check(s.clone(), sn.clone(), &[("contract_became_nullable", "UserProfile.n", true, false)]);
        check(sn, s.clone(), &[("contract_became_non_nullable", "UserProfile.n", false, true)]);
        let i = profile(json!({"n": {"type": "integer"}}), &[], json!({}));
        check(s, i, &[("contract_type_changed", "UserProfile.n", false, false)]);
    }

    #[test]
    fn enums_through_refs() {
        let unit = |vs: &[&str]| json!({"type": "string", "enum": vs});
        let old = profile(
            json!({"variant": {"$ref": "#/$defs/Variant"}}),
            &["variant"],
            json!({"Variant": unit(&["V1", "V2"])}),
        );
        let new = profile(
            json!({"variant": {"$ref": "#/$defs/Variant"}}),
            &["variant"],
            json!({"Variant": unit(&["V1", "V3"])}),
        );
        check(
            old,
            new,
            &[
                ("contract_enum_value_added", "UserProfile.variant", true, false),
                ("contract_enum_value_removed", "UserProfile.variant", false, true),
            ],
        );
        let one_of = |vs: &[&str]| json!({"oneOf": vs.iter().map(|v| json!({"type": "string", "const": v})).collect::<Vec<_>>()});
        let old = profile(json!({"plan": {"$ref": "#/$defs/Plan"}}), &[], json!({"Plan": one_of(&["Free", "Pro"])}));
        let new = profile(json!({"plan": {"$ref": "#/$defs/Plan"}}), &[], json!({"Plan": one_of(&["Free"])}));
        check(old, new, &[("contract_enum_value_removed", "UserProfile.plan", false, true)]);
    }

    #[test]
    fn nested_arrays_nullable_refs_and_cycles() {
        let node = |extra: Value| json!({"type": "object", "properties": {"name": {"type": "string"}, "extra": extra, "child": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}}, "required": ["name"]});
        let old = profile(
            json!({"tree": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}),
            &[],
            json!({"Node": node(json!({"type": "string"}))}),
        );
        let new = profile(
            json!({"tree": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}),
            &[],
            json!({"Node": node(json!({"type": "boolean"}))}),
        );
        check(old, new, &[("contract_type_changed", "UserProfile.tree[].extra", false, false)]);
    }

    #[test]
    fn dangling_refs_are_errors() {
        let bad = profile(json!({"x": {"$ref": "#/$defs/Missing"}}), &[], json!({}));
        assert!(compare(&bad, &bad).is_err());
        let remote = profile(json!({"x": {"$ref": "https://example.com/s.json"}}), &[], json!({}));
        assert!(compare(&remote, &remote).is_err());
    }
}
