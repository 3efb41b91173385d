//! A contract document and its subschemas in a form the compatibility check can compare:
//! every subschema is normalised into a union of *branches*, each admitting one JSON type
//! (null, boolean, integer, non-integer number, string, array, object) under the constraints
//! that apply to it. `$ref` (every local form: `#`, JSON-pointer paths with `~0`/`~1` and
//! percent escapes, `$defs`/`definitions`, `$anchor`), `allOf` (intersection),
//! `anyOf`/`oneOf` (union), `not` (kept for the disjointness check), `type` arrays, OpenAPI
//! `nullable`, `const`/`enum` and integer `format`s (their ranges) are resolved here.
//!
//! Keywords outside the vocabulary are kept as *unknown* on their branch: the comparison
//! treats a reader-side unknown keyword whose value differs from the producer's as an
//! unknown verdict, never as compatible.

use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use serde_json::Value;

/// Which contract a value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The contract before the release.
    Old,
    /// The contract after.
    New,
}

/// A schema that cannot be compared, with the contract it is in and a JSON pointer to the
/// offending subschema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{side:?} contract at {pointer:?}: {message}")]
pub struct ContractError {
    /// Which contract.
    pub side: Side,
    /// JSON pointer to the subschema (`""` is the document).
    pub pointer: String,
    /// What is wrong.
    pub message: String,
}

/// One JSON type (a bit of [`Branch::ty`]).
pub(crate) const NULL: u8 = 1;
pub(crate) const BOOL: u8 = 2;
pub(crate) const INT: u8 = 4;
/// Numbers that are not integers.
pub(crate) const FRAC: u8 = 8;
pub(crate) const STR: u8 = 16;
pub(crate) const ARR: u8 = 32;
pub(crate) const OBJ: u8 = 64;
const ALL: u8 = 127;
pub(crate) const TYPES: [u8; 7] = [NULL, BOOL, INT, FRAC, STR, ARR, OBJ];

pub(crate) fn type_name(t: u8) -> &'static str {
    match t {
        NULL => "null",
        BOOL => "boolean",
        INT => "integer",
        FRAC => "number",
        STR => "string",
        ARR => "array",
        _ => "object",
    }
}

pub(crate) fn type_of(v: &Value) -> u8 {
    match v {
        Value::Null => NULL,
        Value::Bool(_) => BOOL,
        Value::Number(n) if n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) => INT,
        Value::Number(_) => FRAC,
        Value::String(_) => STR,
        Value::Array(_) => ARR,
        Value::Object(_) => OBJ,
    }
}

/// A conjunction of subschemas (all of them apply), as references into a document.
pub(crate) type Conj<'a> = Vec<&'a Value>;

/// What an object admits beyond its declared properties.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Extra<'a> {
    /// Not said: readers ignore unknown fields; producers (serde) emit only declared ones.
    Unspecified,
    /// `false`: unknown fields are rejected (`deny_unknown_fields`).
    Closed,
    /// A schema for every other property (maps, flattened maps).
    Schema(Conj<'a>),
}

/// One bound of a numeric range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bound {
    pub value: f64,
    pub exclusive: bool,
}

/// One alternative of a normalised subschema, admitting a single JSON type.
#[derive(Debug, Clone)]
pub(crate) struct Branch<'a> {
    /// Allowed types (one bit after [`split`]).
    pub ty: u8,
    /// `const`/`enum`: exactly these values.
    pub consts: Option<Vec<&'a Value>>,
    pub min: Option<Bound>,
    pub max: Option<Bound>,
    pub multiple_of: Option<f64>,
    pub min_props: Option<u64>,
    pub max_props: Option<u64>,
    pub min_len: Option<u64>,
    pub max_len: Option<u64>,
    pub format: Option<&'a str>,
    pub prefix: Vec<Conj<'a>>,
    /// Items after the prefix: `None` = any, `Some(empty conj)` never happens; closed is
    /// `items_closed`.
    pub items: Option<Conj<'a>>,
    pub items_closed: bool,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub props: BTreeMap<&'a str, Conj<'a>>,
    pub required: BTreeSet<&'a str>,
    pub extra: Extra<'a>,
    /// `patternProperties` with a pattern the analysis reads (schemars' integer map keys).
    pub patterns: Vec<(&'a str, Conj<'a>)>,
    pub not: Conj<'a>,
    /// Keywords outside the vocabulary: (keyword, value).
    pub unknown: Vec<(&'a str, &'a Value)>,
    /// The subschema whose keywords made this branch (for pointers).
    pub origin: &'a Value,
}

impl<'a> Branch<'a> {
    fn any(origin: &'a Value) -> Self {
        Branch {
            ty: ALL,
            consts: None,
            min: None,
            max: None,
            multiple_of: None,
            min_props: None,
            max_props: None,
            min_len: None,
            max_len: None,
            format: None,
            prefix: Vec::new(),
            items: None,
            items_closed: false,
            min_items: None,
            max_items: None,
            props: BTreeMap::new(),
            required: BTreeSet::new(),
            extra: Extra::Unspecified,
            patterns: Vec::new(),
            not: Vec::new(),
            unknown: Vec::new(),
            origin,
        }
    }

    /// The variant identity of an object branch: its tag properties (a property whose
    /// schema is one string constant: internal and adjacent tags) or, for an externally
    /// tagged variant (closed, one required property), that property's name.
    pub fn identity(&self, doc: &Doc<'a>) -> Option<String> {
        if self.ty != OBJ {
            return None;
        }
        let mut tags = Vec::new();
        for (name, conj) in &self.props {
            if let [only] = conj.as_slice()
                && let Ok(target) = doc.deref(only)
                && let Some(c) = single_const(target)
            {
                tags.push(format!("{name}={}", c.as_str().map_or_else(|| c.to_string(), str::to_owned)));
            }
        }
        if !tags.is_empty() {
            return Some(tags.join(","));
        }
        if self.extra == Extra::Closed && self.required.len() == 1 && self.props.len() == 1 {
            return self.required.first().map(|k| (*k).to_owned());
        }
        None
    }
}

fn single_const(v: &Value) -> Option<&Value> {
    if let Some(c) = v.get("const") {
        return Some(c);
    }
    match v.get("enum") {
        Some(Value::Array(vs)) if vs.len() == 1 => vs.first(),
        _ => None,
    }
}

/// Keywords that only annotate (no effect on which values are valid).
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$anchor",
    "$dynamicAnchor",
    "$comment",
    "$defs",
    "definitions",
    "$vocabulary",
    "title",
    "description",
    "default",
    "examples",
    "example",
    "deprecated",
    "readOnly",
    "writeOnly",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
    // serde deduplicates into sets, and a Vec accepts duplicates: not a constraint for serde.
    "uniqueItems",
];

/// Keywords the normalisation understands.
const UNDERSTOOD: &[&str] = &[
    "type",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "multipleOf",
    "minProperties",
    "maxProperties",
    "format",
    "items",
    "prefixItems",
    "additionalItems",
    "minItems",
    "maxItems",
    "properties",
    "required",
    "additionalProperties",
    "unevaluatedProperties",
    "patternProperties",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "$ref",
    "nullable",
];

/// The range an integer `format` implies (schemars writes the width as `format` and only
/// sometimes as `minimum`/`maximum`; serde enforces the width).
pub fn integer_format_bounds(format: &str) -> Option<(i128, i128)> {
    Some(match format {
        "int8" => (i8::MIN.into(), i8::MAX.into()),
        "uint8" => (0, u8::MAX.into()),
        "int16" => (i16::MIN.into(), i16::MAX.into()),
        "uint16" => (0, u16::MAX.into()),
        "int32" => (i32::MIN.into(), i32::MAX.into()),
        "uint32" => (0, u32::MAX.into()),
        "int64" | "int" => (i64::MIN.into(), i64::MAX.into()),
        "uint64" | "uint" => (0, u64::MAX.into()),
        "int128" => (i128::MIN, i128::MAX),
        "uint128" => (0, i128::MAX),
        _ => return None,
    })
}

fn format_range(format: &str) -> Option<(f64, f64)> {
    // An f32 field: serde refuses a number beyond f32's range (with serde_json's
    // `float_roundtrip`, which the coordinator's build turns on), so `double` → `float`
    // narrows like an integer width does.
    if format == "float" {
        let max = f64::from(f32::MAX);
        return Some((-max, max));
    }
    let (lo, hi) = integer_format_bounds(format)?;
    // u128's upper end does not fit i128; as a float it is the next power of two.
    let hi = if format == "uint128" { u128::MAX as f64 } else { hi as f64 };
    Some((lo as f64, hi))
}

/// Formats that do not constrain what serde accepts (number widths are ranges, above).
pub(crate) fn format_constrains(format: &str) -> bool {
    format != "double" && format_range(format).is_none()
}

/// `a` implies `b` (every string in format `a` is in format `b`).
pub(crate) fn format_implies(a: &str, b: &str) -> bool {
    a == b || (b == "ip" && (a == "ipv4" || a == "ipv6"))
}

/// A parsed contract document: its root and a pointer for each of its values.
pub struct Doc<'a> {
    pub(crate) side: Side,
    root: &'a Value,
    /// JSON pointers and `$anchor`s, indexed on first use (only errors and findings need them).
    index: OnceCell<Index<'a>>,
    /// Normalised conjunctions: each subschema is normalised once per comparison.
    normalised: RefCell<HashMap<Vec<usize>, Rc<Vec<Branch<'a>>>>>,
}

#[derive(Default)]
struct Index<'a> {
    pointers: HashMap<usize, String>,
    anchors: HashMap<&'a str, &'a Value>,
}

impl<'a> Index<'a> {
    fn add(&mut self, v: &'a Value, pointer: String) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(a)) = m.get("$anchor") {
                    self.anchors.insert(a, v);
                }
                for (k, child) in m {
                    self.add(child, format!("{pointer}/{}", escape(k)));
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    self.add(child, format!("{pointer}/{i}"));
                }
            }
            _ => {}
        }
        self.pointers.insert(addr(v), pointer);
    }
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn addr(v: &Value) -> usize {
    std::ptr::from_ref(v) as usize
}

impl<'a> Doc<'a> {
    /// Indexes `root`.
    ///
    /// # Errors
    /// A document that is not a JSON Schema (not an object or boolean, or an object without
    /// any schema keyword).
    pub fn new(side: Side, root: &'a Value) -> Result<Self, ContractError> {
        let refuse = |message: String| ContractError { side, pointer: String::new(), message };
        match root {
            Value::Bool(_) => {}
            Value::Object(m) => {
                let keyword = |k: &String| {
                    ANNOTATIONS.contains(&k.as_str()) || UNDERSTOOD.contains(&k.as_str()) || k.starts_with('$')
                };
                if !m.is_empty() && !m.keys().any(keyword) {
                    let keys: Vec<&str> = m.keys().take(5).map(String::as_str).collect();
                    return Err(refuse(format!(
                        "not a JSON Schema: the document has no schema keyword (keys {keys:?})"
                    )));
                }
            }
            other => {
                return Err(refuse(format!(
                    "not a JSON Schema: a schema is an object or a boolean, this document is {}",
                    match other {
                        Value::Array(_) => "an array",
                        Value::String(_) => "a string",
                        Value::Number(_) => "a number",
                        _ => "null",
                    }
                )));
            }
        }
        Ok(Doc { side, root, index: OnceCell::new(), normalised: RefCell::new(HashMap::new()) })
    }

    fn index(&self) -> &Index<'a> {
        self.index.get_or_init(|| {
            let mut index = Index::default();
            index.add(self.root, String::new());
            index
        })
    }

    /// The document.
    pub(crate) fn root(&self) -> &'a Value {
        self.root
    }

    /// The JSON pointer of a value of this document.
    pub(crate) fn pointer(&self, v: &Value) -> String {
        self.index().pointers.get(&addr(v)).cloned().unwrap_or_default()
    }

    pub(crate) fn error(&self, at: &Value, message: impl Into<String>) -> ContractError {
        ContractError { side: self.side, pointer: self.pointer(at), message: message.into() }
    }

    /// Follows `$ref`s until a subschema without one (cycles of bare `$ref`s are errors).
    pub(crate) fn deref(&self, mut v: &'a Value) -> Result<&'a Value, ContractError> {
        for _ in 0..64 {
            match v.get("$ref") {
                Some(_) if v.as_object().is_some_and(|m| m.len() > 1) => return Ok(v),
                Some(r) => v = self.resolve(v, r)?,
                None => return Ok(v),
            }
        }
        Err(self.error(v, "$ref chain does not end (a cycle of bare $refs)"))
    }

    /// The target of a local `$ref`.
    pub(crate) fn resolve(&self, at: &'a Value, r: &'a Value) -> Result<&'a Value, ContractError> {
        let Value::String(r) = r else { return Err(self.error(at, "$ref is not a string")) };
        let Some(fragment) = r.strip_prefix('#') else {
            return Err(self.error(at, format!("$ref {r:?} is not local to the document (only \"#...\" is followed)")));
        };
        let fragment = percent_decode(fragment).ok_or_else(|| self.error(at, format!("$ref {r:?}: bad % escape")))?;
        if !fragment.is_empty() && !fragment.starts_with('/') {
            return self
                .index()
                .anchors
                .get(fragment.as_str())
                .copied()
                .ok_or_else(|| self.error(at, format!("$ref {r:?}: no $anchor {fragment:?}")));
        }
        let mut target = self.root;
        for token in fragment.split('/').skip(1) {
            let token = token.replace("~1", "/").replace("~0", "~");
            target = match target {
                Value::Object(m) => m.get(&token),
                Value::Array(a) => token.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            }
            .ok_or_else(|| self.error(at, format!("$ref {r:?} points to nothing (no {token:?})")))?;
        }
        Ok(target)
    }

    /// Normalises a conjunction into branches of one type each.
    ///
    /// # Errors
    /// Malformed keywords or `$ref`s, with their pointer.
    pub(crate) fn branches(&self, conj: &[&'a Value]) -> Result<Rc<Vec<Branch<'a>>>, ContractError> {
        let key: Vec<usize> = conj.iter().map(|v| addr(v)).collect();
        if let Some(done) = self.normalised.borrow().get(&key) {
            return Ok(Rc::clone(done));
        }
        let origin = conj.first().copied().unwrap_or(self.root);
        let mut out = vec![Branch::any(origin)];
        for v in conj {
            let next = self.normalise(v, 0)?;
            out = cross(&out, &next);
        }
        let out = Rc::new(split(out));
        self.normalised.borrow_mut().insert(key, Rc::clone(&out));
        Ok(out)
    }

    fn normalise(&self, v: &'a Value, depth: usize) -> Result<Vec<Branch<'a>>, ContractError> {
        if depth > 64 {
            return Err(self.error(v, "subschemas nest through $ref/allOf/anyOf/oneOf without end"));
        }
        let m = match v {
            Value::Bool(true) => return Ok(vec![Branch::any(v)]),
            Value::Bool(false) => return Ok(Vec::new()),
            Value::Object(m) => m,
            _ => return Err(self.error(v, "not a schema (expected an object or a boolean)")),
        };
        let mut b = Branch::any(v);
        let bad = |k: &str, what: &str| self.error(v, format!("{k}: {what}"));
        for (k, val) in m {
            let k = k.as_str();
            match k {
                "type" => {
                    b.ty = match val {
                        Value::String(t) => type_bits(t).ok_or_else(|| bad(k, "unknown type"))?,
                        Value::Array(ts) => ts.iter().try_fold(0, |acc, t| {
                            t.as_str().and_then(type_bits).map(|x| acc | x).ok_or_else(|| bad(k, "unknown type"))
                        })?,
                        _ => return Err(bad(k, "not a string or an array")),
                    };
                }
                "nullable" if val == &Value::Bool(true) => {}
                "enum" => b.consts = Some(val.as_array().ok_or_else(|| bad(k, "not an array"))?.iter().collect()),
                "const" => b.consts = Some(vec![val]),
                "minimum" | "exclusiveMinimum" | "maximum" | "exclusiveMaximum" => {
                    let Some(x) = val.as_f64() else {
                        // draft-04 boolean exclusive flags.
                        if val.is_boolean() {
                            b.unknown.push((k, val));
                            continue;
                        }
                        return Err(bad(k, "not a number"));
                    };
                    let bound = Bound { value: x, exclusive: k.starts_with("exclusive") };
                    if k.ends_with("inimum") {
                        b.min = tighter(b.min, Some(bound), true);
                    } else {
                        b.max = tighter(b.max, Some(bound), false);
                    }
                }
                "multipleOf" => {
                    let m = val.as_f64().filter(|m| *m > 0.0).ok_or_else(|| bad(k, "not a positive number"))?;
                    b.multiple_of = Some(m);
                }
                "minProperties" => b.min_props = Some(val.as_u64().ok_or_else(|| bad(k, "not a count"))?),
                "maxProperties" => b.max_props = Some(val.as_u64().ok_or_else(|| bad(k, "not a count"))?),
                "minLength" => b.min_len = Some(val.as_u64().ok_or_else(|| bad(k, "not a count"))?),
                "maxLength" => b.max_len = Some(val.as_u64().ok_or_else(|| bad(k, "not a count"))?),
                "minItems" => b.min_items = Some(val.as_u64().ok_or_else(|| bad(k, "not a count"))?),
                "maxItems" => b.max_items = Some(val.as_u64().ok_or_else(|| bad(k, "not a count"))?),
                "format" => b.format = Some(val.as_str().ok_or_else(|| bad(k, "not a string"))?),
                "prefixItems" => {
                    b.prefix = val.as_array().ok_or_else(|| bad(k, "not an array"))?.iter().map(|s| vec![s]).collect();
                }
                "items" => match val {
                    // draft-07 tuple form.
                    Value::Array(a) => b.prefix = a.iter().map(|s| vec![s]).collect(),
                    Value::Bool(false) => b.items_closed = true,
                    _ => b.items = Some(vec![val]),
                },
                "additionalItems" => {
                    if !m.get("items").is_some_and(Value::is_array) {
                        continue; // ignored without array-form items
                    }
                    match val {
                        Value::Bool(false) => b.items_closed = true,
                        _ => b.items = Some(vec![val]),
                    }
                }
                "properties" => {
                    let props = val.as_object().ok_or_else(|| bad(k, "not an object"))?;
                    b.props = props.iter().map(|(n, s)| (n.as_str(), vec![s])).collect();
                }
                "required" => {
                    b.required = val
                        .as_array()
                        .ok_or_else(|| bad(k, "not an array"))?
                        .iter()
                        .map(|r| r.as_str().ok_or_else(|| bad(k, "not an array of strings")))
                        .collect::<Result<_, _>>()?;
                }
                "additionalProperties" | "unevaluatedProperties" => {
                    b.extra = match val {
                        Value::Bool(false) => Extra::Closed,
                        _ => Extra::Schema(vec![val]),
                    };
                }
                "patternProperties" => {
                    let pats = val.as_object().ok_or_else(|| bad(k, "not an object"))?;
                    if pats.keys().all(|p| key_pattern(p).is_some()) {
                        b.patterns = pats.iter().map(|(p, s)| (p.as_str(), vec![s])).collect();
                    } else {
                        b.unknown.push((k, val));
                    }
                }
                "not" => b.not.push(val),
                "$ref" | "allOf" | "anyOf" | "oneOf" => {}
                _ if ANNOTATIONS.contains(&k) || k.starts_with("x-") => {}
                _ => b.unknown.push((k, val)),
            }
        }
        if m.get("nullable") == Some(&Value::Bool(true)) {
            b.ty |= NULL;
            if let Some(c) = &mut b.consts {
                c.push(&Value::Null);
            }
        }
        if let Some((lo, hi)) = b.format.and_then(format_range) {
            b.min = tighter(b.min, Some(Bound { value: lo, exclusive: false }), true);
            b.max = tighter(b.max, Some(Bound { value: hi, exclusive: false }), false);
        }
        let mut out = vec![b];
        if let Some(r) = m.get("$ref") {
            let target = self.resolve(v, r)?;
            out = cross(&out, &self.normalise(target, depth + 1)?);
        }
        if let Some(all) = m.get("allOf") {
            for s in all.as_array().ok_or_else(|| bad("allOf", "not an array"))? {
                out = cross(&out, &self.normalise(s, depth + 1)?);
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(alts) = m.get(key) {
                let mut union = Vec::new();
                for s in alts.as_array().ok_or_else(|| bad(key, "not an array"))? {
                    union.extend(self.normalise(s, depth + 1)?);
                }
                out = cross(&out, &union);
            }
        }
        Ok(out)
    }
}

/// The key patterns schemars writes for integer-keyed maps: `Some(signed)`.
fn key_pattern(pattern: &str) -> Option<bool> {
    match pattern {
        r"^\d+$" => Some(false),
        r"^-?\d+$" => Some(true),
        _ => None,
    }
}

/// Does `key` match a pattern [`Branch::patterns`] holds?
pub(crate) fn key_matches(pattern: &str, key: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match key_pattern(pattern) {
        Some(true) => digits(key.strip_prefix('-').unwrap_or(key)),
        Some(false) => digits(key),
        None => false,
    }
}

/// Every key matching pattern `a` matches pattern `b`.
pub(crate) fn key_pattern_within(a: &str, b: &str) -> bool {
    a == b || (key_pattern(a) == Some(false) && key_pattern(b) == Some(true))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn type_bits(t: &str) -> Option<u8> {
    Some(match t {
        "null" => NULL,
        "boolean" => BOOL,
        "integer" => INT,
        "number" => INT | FRAC,
        "string" => STR,
        "array" => ARR,
        "object" => OBJ,
        _ => return None,
    })
}

/// The tighter of two bounds (`lower`: the larger minimum; else the smaller maximum).
pub(crate) fn tighter(a: Option<Bound>, b: Option<Bound>, lower: bool) -> Option<Bound> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => {
            let a_wins = if a.value == b.value {
                a.exclusive
            } else if lower {
                a.value > b.value
            } else {
                a.value < b.value
            };
            Some(if a_wins { a } else { b })
        }
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (x, None) | (None, x) => x,
    }
}

fn max_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (x, None) | (None, x) => x,
    }
}

/// The intersection of two branches.
fn meet<'a>(a: &Branch<'a>, b: &Branch<'a>) -> Branch<'a> {
    let mut out = a.clone();
    out.ty &= b.ty;
    out.consts = match (&a.consts, &b.consts) {
        (Some(x), Some(y)) => Some(x.iter().filter(|v| y.contains(v)).copied().collect()),
        (x, None) => x.clone(),
        (None, y) => y.clone(),
    };
    out.min = tighter(a.min, b.min, true);
    out.max = tighter(a.max, b.max, false);
    out.multiple_of = match (a.multiple_of, b.multiple_of) {
        (Some(x), Some(y)) if (x / y).fract() == 0.0 => Some(x),
        (Some(x), Some(y)) if (y / x).fract() == 0.0 => Some(y),
        (Some(x), Some(_)) => {
            out.unknown.push(("multipleOf", b.origin.get("multipleOf").unwrap_or(&Value::Null)));
            Some(x)
        }
        (x, y) => x.or(y),
    };
    out.min_props = max_opt(a.min_props, b.min_props);
    out.max_props = min_opt(a.max_props, b.max_props);
    out.min_len = max_opt(a.min_len, b.min_len);
    out.max_len = min_opt(a.max_len, b.max_len);
    out.format = a.format.or(b.format);
    if a.format.is_some() && b.format.is_some() && a.format != b.format {
        out.unknown.push(("format", b.origin.get("format").unwrap_or(&Value::Null)));
    }
    if out.prefix.len() < b.prefix.len() {
        out.prefix.resize(b.prefix.len(), Vec::new());
    }
    for (i, p) in b.prefix.iter().enumerate() {
        out.prefix[i].extend(p.iter().copied());
    }
    out.items = match (&a.items, &b.items) {
        (Some(x), Some(y)) => Some(x.iter().chain(y).copied().collect()),
        (x, None) => x.clone(),
        (None, y) => y.clone(),
    };
    out.items_closed = a.items_closed || b.items_closed;
    out.min_items = max_opt(a.min_items, b.min_items);
    out.max_items = min_opt(a.max_items, b.max_items);
    for (name, conj) in &b.props {
        out.props.entry(name).or_default().extend(conj.iter().copied());
    }
    out.required.extend(b.required.iter().copied());
    out.extra = match (&a.extra, &b.extra) {
        (Extra::Closed, _) | (_, Extra::Closed) => Extra::Closed,
        (Extra::Schema(x), Extra::Schema(y)) => Extra::Schema(x.iter().chain(y).copied().collect()),
        (Extra::Schema(x), Extra::Unspecified) | (Extra::Unspecified, Extra::Schema(x)) => Extra::Schema(x.clone()),
        (Extra::Unspecified, Extra::Unspecified) => Extra::Unspecified,
    };
    out.patterns.extend(b.patterns.iter().cloned());
    out.not.extend(b.not.iter().copied());
    out.unknown.extend(b.unknown.iter().copied());
    // The more specific subschema names the branch.
    if b.origin.as_object().is_some_and(|m| !m.contains_key("$ref") && !m.contains_key("allOf")) {
        out.origin = b.origin;
    }
    out
}

fn cross<'a>(a: &[Branch<'a>], b: &[Branch<'a>]) -> Vec<Branch<'a>> {
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let m = meet(x, y);
            if m.ty != 0 {
                out.push(m);
            }
        }
    }
    out
}

/// One branch per JSON type; constants go to the branch of their type.
fn split(branches: Vec<Branch<'_>>) -> Vec<Branch<'_>> {
    let mut out = Vec::new();
    for b in branches {
        for t in TYPES {
            if b.ty & t == 0 {
                continue;
            }
            let consts = match &b.consts {
                Some(cs) => {
                    let mine: Vec<&Value> = cs.iter().filter(|c| type_of(c) & t != 0).copied().collect();
                    if mine.is_empty() {
                        continue;
                    }
                    Some(mine)
                }
                None => None,
            };
            out.push(Branch { ty: t, consts, ..b.clone() });
        }
    }
    out
}
