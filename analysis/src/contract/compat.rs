//! The inclusion check: can every value a *producer* schema admits be read by a *reader*
//! schema? Run with (old, new) it answers backward compatibility, with (new, old) forward.
//!
//! It follows serde's reading of schemars output rather than bare JSON Schema where the two
//! differ: a struct without `additionalProperties` produces only its declared fields (serde
//! never emits others) while a reader without it ignores unknown fields; a field with a
//! `default` is always written even though it is not `required`; `uniqueItems` is
//! not a constraint (serde sets deduplicate); `float` is a range (f32s), `double` is not; integer
//! formats are ranges too. Unions are matched alternative by alternative, and a failing alternative is
//! explained against the reader alternative with the same variant identity (tag value or
//! external key), never by position.
//!
//! One deliberate difference, on the safe side: serde also reads a struct from an array of
//! its fields in declaration order (a tuple variant turned into a struct variant reads old
//! data); a JSON Schema's `properties` do not keep that order reliably, so the analysis
//! calls array → object a type change (breaking) — a release more, never a silent miss.
//!
//! Three-valued: [`Verdict::Unknown`] when a reader-side keyword outside the vocabulary, or a
//! `not` it cannot decide, is met in a compared pair whose producer does not carry the same
//! keyword.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::schema::{
    ARR, BOOL, Branch, Conj, Doc, Extra, FRAC, INT, NULL, OBJ, STR, format_constrains, format_implies, key_matches,
    key_pattern_within, type_name, type_of,
};
use super::{ContractError, Side};

/// A member of an object the producer may emit.
#[derive(Clone, Copy)]
enum Member<'s> {
    /// A named property.
    Property(&'s str),
    /// The values under an integer-key pattern (`patternProperties`).
    Keys(&'s str),
}

/// The outcome of one inclusion check, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every value is readable.
    Compatible,
    /// Cannot be decided (a keyword outside the vocabulary): treated as blocking.
    Unknown,
    /// Some value is not readable.
    Breaking,
}

/// Why a producer value is not readable, and where.
#[derive(Debug, Clone)]
pub(crate) struct Break {
    pub path: String,
    pub code: &'static str,
    pub description: String,
    pub verdict: Verdict,
    /// Pointer into the producer's document.
    pub producer_pointer: String,
    /// Pointer into the reader's document.
    pub reader_pointer: String,
}

type Key = (Vec<usize>, Vec<usize>);

fn key(a: &[&Value], b: &[&Value]) -> Key {
    let addrs = |c: &[&Value]| c.iter().map(|v| std::ptr::from_ref(*v) as usize).collect();
    (addrs(a), addrs(b))
}

/// One direction of the check.
pub(crate) struct Check<'d, 'a> {
    pub producer: &'d Doc<'a>,
    pub reader: &'d Doc<'a>,
    /// Pairs assumed to hold while they are being checked (cycles), and finished results.
    assumed: HashSet<Key>,
    done: HashMap<Key, Verdict>,
    reported: HashSet<Key>,
    pub breaks: Vec<Break>,
}

static ANY: Value = Value::Bool(true);

impl<'d, 'a> Check<'d, 'a> {
    pub fn new(producer: &'d Doc<'a>, reader: &'d Doc<'a>) -> Self {
        Check {
            producer,
            reader,
            assumed: HashSet::new(),
            done: HashMap::new(),
            reported: HashSet::new(),
            breaks: Vec::new(),
        }
    }

    /// A code that reads as the change from old to new: `backward` when the producer is the
    /// old contract, `forward` when it is the new one.
    fn code(&self, backward: &'static str, forward: &'static str) -> &'static str {
        if self.producer.side == Side::Old { backward } else { forward }
    }

    #[allow(clippy::too_many_arguments)]
    fn note(
        &mut self,
        report: bool,
        path: &str,
        code: &'static str,
        description: String,
        verdict: Verdict,
        a: &Value,
        b: &Value,
    ) -> Verdict {
        if report {
            self.breaks.push(Break {
                path: path.to_owned(),
                code,
                description,
                verdict,
                producer_pointer: self.producer.pointer(a),
                reader_pointer: self.reader.pointer(b),
            });
        }
        verdict
    }

    /// Is every value of the producer conjunction `a` readable under the reader conjunction
    /// `b`? With `report`, every reason is recorded at its path.
    ///
    /// # Errors
    /// Malformed subschemas met on the way.
    pub fn includes(
        &mut self,
        a: &[&'a Value],
        b: &[&'a Value],
        path: &str,
        report: bool,
    ) -> Result<Verdict, ContractError> {
        let k = key(a, b);
        if self.assumed.contains(&k) {
            return Ok(Verdict::Compatible);
        }
        if !report && let Some(v) = self.done.get(&k) {
            return Ok(*v);
        }
        if report && !self.reported.insert(k.clone()) {
            return Ok(self.done.get(&k).copied().unwrap_or(Verdict::Compatible));
        }
        // The reporting pass only walks what the deciding pass found failing.
        if report && self.done.get(&k) == Some(&Verdict::Compatible) {
            return Ok(Verdict::Compatible);
        }
        self.assumed.insert(k.clone());
        let result = self.union(a, b, path, report);
        self.assumed.remove(&k);
        let result = result?;
        self.done.insert(k, result);
        Ok(result)
    }

    fn union(&mut self, a: &[&'a Value], b: &[&'a Value], path: &str, report: bool) -> Result<Verdict, ContractError> {
        let left = self.producer.branches(a)?;
        let right = self.reader.branches(b)?;
        let mut worst = Verdict::Compatible;
        for x in left.iter() {
            let mut best = Verdict::Breaking;
            for y in right.iter().filter(|y| y.ty == x.ty || (x.ty == INT && y.ty == FRAC)) {
                best = best.min(self.branch(x, y, path, false)?);
                if best == Verdict::Compatible {
                    break;
                }
            }
            if best != Verdict::Compatible && report {
                self.explain(x, &right, path, left.iter().filter(|l| l.ty == x.ty).count() > 1)?;
            }
            worst = worst.max(best);
            if worst == Verdict::Breaking && !report {
                break;
            }
        }
        Ok(worst)
    }

    /// Records why producer branch `x` is not readable under any of `right`.
    /// `variants`: the producer has several alternatives of this type (an enum), so a
    /// reader alternative is only matched by the same variant identity.
    fn explain(
        &mut self,
        x: &Branch<'a>,
        right: &[Branch<'a>],
        path: &str,
        variants: bool,
    ) -> Result<(), ContractError> {
        let same_type: Vec<&Branch<'a>> = right.iter().filter(|y| y.ty == x.ty).collect();
        if let Some(consts) = &x.consts {
            for c in consts {
                let mut best = Verdict::Breaking;
                for y in &same_type {
                    best = best.min(self.accepts(y, c)?);
                }
                if best != Verdict::Compatible {
                    let shown = c.as_str().map_or_else(|| c.to_string(), |s| format!("{s:?}"));
                    let (code, description) = if same_type.iter().any(|y| y.consts.is_some()) || same_type.is_empty() {
                        (
                            self.code("contract_enum_value_removed", "contract_enum_value_added"),
                            format!("value {shown} is not accepted by the {} contract", self.reader_name()),
                        )
                    } else {
                        (
                            self.code("contract_values_restricted", "contract_values_widened"),
                            format!("value {shown} is outside the {} contract's constraints", self.reader_name()),
                        )
                    };
                    let at = same_type.first().map_or(x.origin, |y| y.origin);
                    self.note(true, path, code, description, best, x.origin, at);
                }
            }
            return Ok(());
        }
        if same_type.is_empty() {
            let identity = x.identity(self.producer);
            let code = if x.ty == NULL {
                self.code("contract_became_non_nullable", "contract_became_nullable")
            } else if x.ty == FRAC && right.iter().any(|y| y.ty == INT) {
                self.code("contract_type_narrowed", "contract_type_widened")
            } else if identity.is_some() {
                self.code("contract_variant_removed", "contract_variant_added")
            } else {
                "contract_type_changed"
            };
            let readers: Vec<&str> = {
                let mut t: Vec<u8> = right.iter().map(|y| y.ty).collect();
                t.sort_unstable();
                t.dedup();
                t.into_iter().map(type_name).collect()
            };
            let what = match identity {
                Some(id) => format!("variant {id}"),
                None => format!("type {}", type_name(x.ty)),
            };
            let description = format!(
                "{what} is not accepted by the {} contract (it accepts {})",
                self.reader_name(),
                if readers.is_empty() { "nothing".to_owned() } else { readers.join("|") }
            );
            let at = right.first().map_or(x.origin, |y| y.origin);
            self.note(true, path, code, description, Verdict::Breaking, x.origin, at);
            return Ok(());
        }
        // The reader alternative with the same identity, or the only one of that type.
        let variants = variants || same_type.len() > 1;
        let id = x.identity(self.producer).filter(|_| variants);
        let matched = match &id {
            Some(id) => same_type.iter().find(|y| y.identity(self.reader).as_ref() == Some(id)).copied(),
            None => None,
        }
        .or_else(|| match id {
            None => same_type.first().copied(),
            // A tagged producer variant against an untagged reader shape.
            Some(_) => same_type.iter().find(|y| y.identity(self.reader).is_none()).copied(),
        });
        match matched {
            Some(y) => {
                let p = match &id {
                    Some(id) if same_type.len() > 1 || x.props.len() > 1 => format!("{path}[{id}]"),
                    _ => path.to_owned(),
                };
                self.branch(x, y, &p, true)?;
            }
            None => {
                let id = id.unwrap_or_default();
                let code = self.code("contract_variant_removed", "contract_variant_added");
                let description = format!("variant {id} is not accepted by the {} contract", self.reader_name());
                let at = same_type.first().map_or(x.origin, |y| y.origin);
                self.note(true, &format!("{path}[{id}]"), code, description, Verdict::Breaking, x.origin, at);
            }
        }
        Ok(())
    }

    fn reader_name(&self) -> &'static str {
        if self.reader.side == Side::Old { "old" } else { "new" }
    }

    /// Does reader branch `y` accept the value `v`?
    fn accepts(&mut self, y: &Branch<'a>, v: &'a Value) -> Result<Verdict, ContractError> {
        let t = type_of(v);
        if y.ty & t == 0 && !(t == INT && y.ty == FRAC) {
            return Ok(Verdict::Breaking);
        }
        if let Some(cs) = &y.consts {
            return Ok(if cs.iter().any(|c| same_value(c, v)) { Verdict::Compatible } else { Verdict::Breaking });
        }
        let mut verdict = if y.unknown.is_empty() { Verdict::Compatible } else { Verdict::Unknown };
        for n in &y.not {
            let mut excluded = Verdict::Breaking;
            for e in self.reader.branches(&[n])?.iter() {
                excluded = excluded.min(self.accepts(e, v)?);
            }
            match excluded {
                Verdict::Compatible => return Ok(Verdict::Breaking),
                Verdict::Unknown => verdict = verdict.max(Verdict::Unknown),
                Verdict::Breaking => {}
            }
        }
        match v {
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(0.0);
                if y.min.is_some_and(|m| x < m.value || (m.exclusive && x == m.value))
                    || y.max.is_some_and(|m| x > m.value || (m.exclusive && x == m.value))
                {
                    return Ok(Verdict::Breaking);
                }
            }
            Value::String(s) => {
                let n = s.chars().count() as u64;
                if y.min_len.is_some_and(|m| n < m) || y.max_len.is_some_and(|m| n > m) {
                    return Ok(Verdict::Breaking);
                }
                if y.format.is_some_and(format_constrains) {
                    verdict = verdict.max(Verdict::Unknown);
                }
            }
            Value::Object(m) => {
                for r in &y.required {
                    if !m.contains_key(*r) {
                        return Ok(Verdict::Breaking);
                    }
                }
                for (k, val) in m {
                    let by_pattern = y.patterns.iter().find(|(p, _)| key_matches(p, k)).map(|(_, c)| c.clone());
                    let conj: Conj<'a> = match (y.props.get(k.as_str()).cloned().or(by_pattern), &y.extra) {
                        (Some(c), _) => c,
                        (None, Extra::Schema(c)) => c.clone(),
                        (None, Extra::Closed) => return Ok(Verdict::Breaking),
                        (None, Extra::Unspecified) => continue,
                    };
                    let mut best = Verdict::Breaking;
                    for b in self.reader.branches(&conj)?.iter() {
                        best = best.min(self.accepts(b, val)?);
                    }
                    verdict = verdict.max(best);
                }
            }
            Value::Array(items) => {
                let n = items.len() as u64;
                if y.min_items.is_some_and(|m| n < m) || y.max_items.is_some_and(|m| n > m) {
                    return Ok(Verdict::Breaking);
                }
                for (i, val) in items.iter().enumerate() {
                    let conj: Conj<'a> = match (y.prefix.get(i), &y.items) {
                        (Some(c), _) => c.clone(),
                        (None, Some(c)) => c.clone(),
                        (None, None) if y.items_closed => return Ok(Verdict::Breaking),
                        (None, None) => continue,
                    };
                    let mut best = Verdict::Breaking;
                    for b in self.reader.branches(&conj)?.iter() {
                        best = best.min(self.accepts(b, val)?);
                    }
                    verdict = verdict.max(best);
                }
            }
            _ => {}
        }
        Ok(verdict)
    }

    /// Is every value of producer branch `x` readable under reader branch `y` (same type, or
    /// integer under number)?
    fn branch(&mut self, x: &Branch<'a>, y: &Branch<'a>, path: &str, report: bool) -> Result<Verdict, ContractError> {
        if let Some(consts) = &x.consts {
            let mut worst = Verdict::Compatible;
            for c in consts {
                let v = self.accepts(y, c)?;
                if v != Verdict::Compatible && report {
                    let shown = c.as_str().map_or_else(|| c.to_string(), |s| format!("{s:?}"));
                    let code = if y.consts.is_some() {
                        self.code("contract_enum_value_removed", "contract_enum_value_added")
                    } else {
                        self.code("contract_values_restricted", "contract_values_widened")
                    };
                    let d = format!("value {shown} is not accepted by the {} contract", self.reader_name());
                    self.note(true, path, code, d, v, x.origin, y.origin);
                }
                worst = worst.max(v);
            }
            return Ok(worst);
        }
        let mut worst = Verdict::Compatible;
        macro_rules! fail {
            ($verdict:expr, $code:expr, $($d:tt)*) => {{
                let v = $verdict;
                worst = worst.max(v);
                if report {
                    let d = format!($($d)*);
                    self.note(true, path, $code, d, v, x.origin, y.origin);
                } else if worst == Verdict::Breaking {
                    return Ok(worst);
                }
            }};
        }
        if y.consts.is_some() {
            fail!(
                Verdict::Breaking,
                self.code("contract_values_restricted", "contract_values_widened"),
                "now restricted to {} value(s) ({} contract)",
                y.consts.as_ref().map_or(0, Vec::len),
                self.reader_name()
            );
        }
        // Reader keywords outside the vocabulary: fine only if the producer carries the same.
        for (k, val) in &y.unknown {
            if !x.unknown.iter().any(|(k2, v2)| k2 == k && v2 == val) {
                fail!(
                    Verdict::Unknown,
                    "contract_unknown_keyword",
                    "keyword {k:?} is not understood by the analysis, so compatibility is unknown"
                );
            }
        }
        for n in &y.not {
            let v = self.disjoint(x, n)?;
            if v != Verdict::Compatible {
                fail!(v, "contract_not_changed", "\"not\" subschema may exclude values the producer emits");
            }
        }
        match x.ty {
            INT | FRAC => {
                if let Some(m) = y.multiple_of {
                    let integers_are = x.ty == INT && (1.0 / m).fract() == 0.0;
                    if !integers_are && !x.multiple_of.is_some_and(|k| (k / m).fract() == 0.0) {
                        fail!(
                            Verdict::Breaking,
                            "contract_multiple_of_changed",
                            "the {} contract requires multiples of {m}",
                            self.reader_name()
                        );
                    }
                }
                let below = match (x.min, y.min) {
                    (_, None) => false,
                    (None, Some(_)) => true,
                    (Some(a), Some(b)) => a.value < b.value || (a.value == b.value && b.exclusive && !a.exclusive),
                };
                let above = match (x.max, y.max) {
                    (_, None) => false,
                    (None, Some(_)) => true,
                    (Some(a), Some(b)) => a.value > b.value || (a.value == b.value && b.exclusive && !a.exclusive),
                };
                if below || above {
                    let show = |b: &Branch<'_>| {
                        // Exact integers where the float bound is the format's (2^63 - 1 is
                        // not a float).
                        let exact = b.format.and_then(super::schema::integer_format_bounds);
                        let num = |m: Option<super::schema::Bound>, lower: bool, inf: &str| {
                            m.map_or(inf.to_owned(), |m| match exact {
                                Some((lo, _)) if lower && lo as f64 == m.value => lo.to_string(),
                                Some((_, hi)) if !lower && hi as f64 == m.value => hi.to_string(),
                                _ => fmt_num(m.value),
                            })
                        };
                        format!("[{}, {}]", num(b.min, true, "-inf"), num(b.max, false, "inf"))
                    };
                    fail!(
                        Verdict::Breaking,
                        self.code("contract_range_narrowed", "contract_range_widened"),
                        "{} range {} is not within {} ({} contract)",
                        type_name(x.ty),
                        show(x),
                        show(y),
                        self.reader_name()
                    );
                }
            }
            STR => {
                let shorter = y.min_len.is_some_and(|m| x.min_len.is_none_or(|a| a < m));
                let longer = y.max_len.is_some_and(|m| x.max_len.is_none_or(|a| a > m));
                if shorter || longer {
                    fail!(
                        Verdict::Breaking,
                        self.code("contract_range_narrowed", "contract_range_widened"),
                        "string length bounds narrowed in the {} contract",
                        self.reader_name()
                    );
                }
                if let Some(f) = y.format.filter(|f| format_constrains(f))
                    && !x.format.is_some_and(|g| format_implies(g, f))
                {
                    fail!(
                        Verdict::Breaking,
                        self.code("contract_format_added", "contract_format_removed"),
                        "the {} contract requires format {f:?} ({})",
                        self.reader_name(),
                        x.format.map_or("no format before".to_owned(), |g| format!("not implied by {g:?}"))
                    );
                }
            }
            ARR => worst = worst.max(self.array(x, y, path, report)?),
            OBJ => worst = worst.max(self.object(x, y, path, report)?),
            NULL | BOOL => {}
            _ => {}
        }
        Ok(worst)
    }

    fn array(&mut self, x: &Branch<'a>, y: &Branch<'a>, path: &str, report: bool) -> Result<Verdict, ContractError> {
        let mut worst = Verdict::Compatible;
        // Lengths the producer can emit.
        let x_min = x.min_items.unwrap_or(0);
        let x_max = match (x.max_items, x.items_closed) {
            (Some(m), _) => Some(m),
            (None, true) => Some(x.prefix.len() as u64),
            (None, false) => None,
        };
        let y_max = match (y.max_items, y.items_closed) {
            (Some(m), true) => Some(m.min(y.prefix.len() as u64)),
            (Some(m), false) => Some(m),
            (None, true) => Some(y.prefix.len() as u64),
            (None, false) => None,
        };
        let too_short = y.min_items.is_some_and(|m| x_min < m);
        let too_long = y_max.is_some_and(|m| x_max.is_none_or(|a| a > m));
        if too_short || too_long {
            worst = Verdict::Breaking;
            if report {
                let show =
                    |lo: u64, hi: Option<u64>| format!("[{lo}, {}]", hi.map_or("inf".to_owned(), |h| h.to_string()));
                let d = format!(
                    "array length {} is not within {} ({} contract)",
                    show(x_min, x_max),
                    show(y.min_items.unwrap_or(0), y_max),
                    self.reader_name()
                );
                self.note(true, path, "contract_length_changed", d, worst, x.origin, y.origin);
            } else {
                return Ok(worst);
            }
        }
        let n = x.prefix.len().max(y.prefix.len());
        let any: &'a Value = &ANY;
        for i in 0..n {
            if x_max.is_some_and(|m| (i as u64) >= m) {
                break;
            }
            let xi = x.prefix.get(i).or(x.items.as_ref());
            let Some(xi) = xi.cloned().or_else(|| (!x.items_closed).then(|| vec![any])) else { break };
            let Some(yi) =
                y.prefix.get(i).or(y.items.as_ref()).cloned().or_else(|| (!y.items_closed).then(|| vec![any]))
            else {
                continue; // already a length break
            };
            let p = if x.prefix.len() > i || y.prefix.len() > i { format!("{path}[{i}]") } else { format!("{path}[]") };
            let v = self.includes(&xi, &yi, &p, report)?;
            worst = worst.max(v);
            if worst == Verdict::Breaking && !report {
                return Ok(worst);
            }
        }
        if x_max.is_none_or(|m| m > n as u64)
            && let Some(xr) = x.items.clone().or_else(|| (!x.items_closed).then(|| vec![any]))
            && let Some(yr) = y.items.clone().or_else(|| (!y.items_closed).then(|| vec![any]))
        {
            let v = self.includes(&xr, &yr, &format!("{path}[]"), report)?;
            worst = worst.max(v);
        }
        Ok(worst)
    }

    fn object(&mut self, x: &Branch<'a>, y: &Branch<'a>, path: &str, report: bool) -> Result<Verdict, ContractError> {
        let mut worst = Verdict::Compatible;
        let any: &'a Value = &ANY;
        // Property counts: what the producer guarantees against what the reader demands.
        let x_min = x.min_props.unwrap_or(0).max(x.required.len() as u64);
        let x_max = x.max_props.or_else(|| {
            (x.patterns.is_empty() && !matches!(x.extra, Extra::Schema(_)) && !x.props.is_empty())
                .then_some(x.props.len() as u64)
        });
        let fewer = y.min_props.is_some_and(|m| x_min < m);
        let more = y.max_props.is_some_and(|m| x_max.is_none_or(|a| a > m));
        if fewer || more {
            worst = Verdict::Breaking;
            if report {
                let d = format!("property count bounds narrowed in the {} contract", self.reader_name());
                self.note(true, path, "contract_property_count_changed", d, worst, x.origin, y.origin);
            } else {
                return Ok(worst);
            }
        }
        macro_rules! fail {
            ($p:expr, $code:expr, $($d:tt)*) => {{
                worst = Verdict::Breaking;
                if report {
                    let d = format!($($d)*);
                    self.note(true, &$p, $code, d, Verdict::Breaking, x.origin, y.origin);
                } else {
                    return Ok(worst);
                }
            }};
        }
        // What the producer emits beyond its declared properties (serde: nothing for a struct).
        let x_extra: Option<Conj<'a>> = match &x.extra {
            Extra::Closed => None,
            Extra::Schema(c) => Some(c.clone()),
            Extra::Unspecified if x.props.is_empty() && x.required.is_empty() && x.patterns.is_empty() => {
                Some(vec![any])
            }
            Extra::Unspecified => None,
        };
        for name in &y.required {
            // serde emits every field it does not skip: one with a `default` (serde(default),
            // not required for reading) is still always written.
            let emitted = x.props.get(name).is_some_and(|c| c.iter().any(|v| v.get("default").is_some()));
            if x.required.contains(name) || emitted {
                continue;
            }
            let p = format!("{path}.{name}");
            if x.props.contains_key(name) {
                fail!(
                    p,
                    self.code("contract_property_became_required", "contract_property_became_optional"),
                    "required by the {} contract, optional before",
                    self.reader_name()
                );
            } else {
                fail!(
                    p,
                    self.code("contract_required_property_added", "contract_property_removed"),
                    "required by the {} contract, absent from the {} one",
                    self.reader_name(),
                    if self.reader.side == Side::Old { "new" } else { "old" }
                );
            }
        }
        // What the producer may emit — each named property, then the values under each
        // integer-key pattern — against where the reader takes it from.
        let named = x.props.iter().map(|(name, xc)| (Member::Property(name), xc, y.props.get(name)));
        let keyed = x.patterns.iter().map(|(pattern, xc)| {
            (Member::Keys(pattern), xc, y.patterns.iter().find(|(q, _)| key_pattern_within(pattern, q)).map(|(_, c)| c))
        });
        for (member, xc, found) in named.chain(keyed) {
            // Paths of properties are only built when reported (the deciding pass walks them all).
            let p = match member {
                Member::Property(name) if report => format!("{path}.{name}"),
                Member::Property(_) => String::new(),
                Member::Keys(_) => format!("{path}.*"),
            };
            let yc = match (found, &y.extra) {
                (Some(c), _) | (None, Extra::Schema(c)) => c.clone(),
                (None, Extra::Closed) => {
                    match member {
                        Member::Property(name) => fail!(
                            p,
                            self.code("contract_property_removed", "contract_property_added"),
                            "the {} contract denies unknown fields and has no property {name:?}",
                            self.reader_name()
                        ),
                        Member::Keys(pattern) => fail!(
                            p,
                            self.code("contract_map_keys_narrowed", "contract_map_keys_widened"),
                            "the {} contract does not accept keys matching {pattern:?}",
                            self.reader_name()
                        ),
                    }
                    continue;
                }
                (None, Extra::Unspecified) => continue,
            };
            let v = self.includes(xc, &yc, &p, report)?;
            worst = worst.max(v);
            if worst == Verdict::Breaking && !report {
                return Ok(worst);
            }
        }
        if let Some(xe) = x_extra {
            match &y.extra {
                Extra::Closed => {
                    fail!(
                        format!("{path}.*"),
                        self.code("contract_became_closed", "contract_became_open"),
                        "the {} contract denies unknown fields; the producer may emit any key",
                        self.reader_name()
                    );
                }
                Extra::Schema(ye) => {
                    let v = self.includes(&xe, ye, &format!("{path}.*"), report)?;
                    worst = worst.max(v);
                }
                Extra::Unspecified => {}
            }
            // An arbitrary producer key may be one the reader declares.
            for (name, yc) in &y.props {
                if x.props.contains_key(name) {
                    continue;
                }
                let v = self.includes(&xe, yc, &format!("{path}.{name}"), report)?;
                worst = worst.max(v);
                if worst == Verdict::Breaking && !report {
                    return Ok(worst);
                }
            }
        }
        Ok(worst)
    }

    /// Is producer branch `x` disjoint from the subschema `n` (so `not n` admits it)?
    fn disjoint(&mut self, x: &Branch<'a>, n: &'a Value) -> Result<Verdict, ContractError> {
        let excluded = self.reader.branches(&[n])?;
        if let Some(cs) = &x.consts {
            let mut worst = Verdict::Compatible;
            for c in cs {
                for e in excluded.iter() {
                    worst = worst.max(match self.accepts(e, c)? {
                        Verdict::Compatible => Verdict::Breaking,
                        Verdict::Unknown => Verdict::Unknown,
                        Verdict::Breaking => Verdict::Compatible,
                    });
                }
            }
            return Ok(worst);
        }
        let comparable = |e: &Branch<'a>| e.ty == x.ty || (x.ty == INT && e.ty == FRAC);
        if !excluded.iter().any(comparable) {
            return Ok(Verdict::Compatible);
        }
        // Every producer value of this type is excluded.
        for e in excluded.iter().filter(|e| comparable(e)) {
            if e.consts.is_none() && self.branch(x, e, "", false)? == Verdict::Compatible {
                return Ok(Verdict::Breaking);
            }
        }
        // The producer excludes the same subschema (unchanged `not`).
        if x.not.contains(&n) {
            return Ok(Verdict::Compatible);
        }
        Ok(Verdict::Unknown)
    }
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e20 { format!("{}", x as i128) } else { x.to_string() }
}

/// JSON equality with numbers compared by value (`1` and `1.0` differ in serde_json).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}
