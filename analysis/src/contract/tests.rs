//! Unit cases for each construct of the vocabulary; the serde oracle (`tests/oracle.rs`)
//! checks the verdicts against real Rust types.

use serde_json::{Value, json};

use super::*;

fn profile(props: Value, required: &[&str], defs: Value) -> Value {
    json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "UserProfile", "type": "object",
           "properties": props, "required": required, "$defs": defs})
}

fn word(v: Verdict) -> &'static str {
    match v {
        Verdict::Compatible => "ok",
        Verdict::Breaking => "break",
        Verdict::Unknown => "unknown",
    }
}

/// (code, path, backward, forward) with verdicts as `ok`/`break`/`unknown`.
#[track_caller]
fn check(old: &Value, new: &Value, expected: &[(&str, &str, &str, &str)]) {
    let got: Vec<(&str, String, &str, &str)> =
        compare(old, new).unwrap().into_iter().map(|c| (c.code, c.path, word(c.backward), word(c.forward))).collect();
    let want: Vec<(&str, String, &str, &str)> =
        expected.iter().map(|(c, p, b, f)| (*c, (*p).to_owned(), *b, *f)).collect();
    assert_eq!(got, want);
}

/// Overall (backward, forward).
#[track_caller]
fn verdict(old: &Value, new: &Value) -> (&'static str, &'static str) {
    let c = compatibility(&compare(old, new).unwrap());
    (word(c.backward), word(c.forward))
}

fn field(schema: Value) -> Value {
    profile(json!({"f": schema}), &["f"], json!({}))
}

#[test]
fn identical_and_reordered_schemas_have_no_change() {
    let a = profile(json!({"id": {"type": "string"}, "age": {"type": "integer"}}), &["id", "age"], json!({}));
    let b = profile(json!({"age": {"type": "integer"}, "id": {"type": "string"}}), &["age", "id"], json!({}));
    check(&a, &b, &[]);
}

#[test]
fn properties_required_and_closed_models() {
    let base = profile(json!({"id": {"type": "string"}}), &["id"], json!({}));
    let req = profile(json!({"id": {"type": "string"}, "ekv": {"type": "integer"}}), &["id", "ekv"], json!({}));
    check(&base, &req, &[("contract_required_property_added", "UserProfile.ekv", "break", "ok")]);
    check(&req, &base, &[("contract_property_removed", "UserProfile.ekv", "ok", "break")]);
    let opt = profile(json!({"id": {"type": "string"}, "bio": {"type": ["string", "null"]}}), &["id"], json!({}));
    assert_eq!(verdict(&base, &opt), ("ok", "ok"));
    let mut closed_old = base.clone();
    closed_old["additionalProperties"] = json!(false);
    let mut closed_new = req.clone();
    closed_new["additionalProperties"] = json!(false);
    check(&closed_old, &closed_new, &[("contract_required_property_added", "UserProfile.ekv", "break", "break")]);
    // An optional field added to a closed model: old closed readers reject it.
    let mut closed_opt = opt.clone();
    closed_opt["additionalProperties"] = json!(false);
    assert_eq!(verdict(&closed_old, &closed_opt), ("ok", "break"));
    // Closing an open struct: serde producers emit only declared fields.
    assert_eq!(verdict(&base, &closed_old), ("ok", "ok"));
}

#[test]
fn nullability_and_types() {
    let s = field(json!({"type": "string"}));
    let sn = field(json!({"type": ["string", "null"]}));
    check(&s, &sn, &[("contract_became_nullable", "UserProfile.f", "ok", "break")]);
    check(&sn, &s, &[("contract_became_non_nullable", "UserProfile.f", "break", "ok")]);
    let i = field(json!({"type": "integer"}));
    check(&s, &i, &[("contract_type_changed", "UserProfile.f", "break", "break")]);
    let n = field(json!({"type": "number", "format": "double"}));
    check(&i, &n, &[("contract_type_widened", "UserProfile.f", "ok", "break")]);
    check(&n, &i, &[("contract_type_narrowed", "UserProfile.f", "break", "ok")]);
    // Option<T> of a $ref as anyOf.
    let r = profile(json!({"f": {"$ref": "#/$defs/T"}}), &["f"], json!({"T": {"type": "string"}}));
    let rn = profile(
        json!({"f": {"anyOf": [{"$ref": "#/$defs/T"}, {"type": "null"}]}}),
        &[],
        json!({"T": {"type": "string"}}),
    );
    assert_eq!(verdict(&r, &rn), ("ok", "break"));
}

#[test]
fn integer_formats_and_bounds() {
    let u = |f: &str| field(json!({"type": "integer", "format": f, "minimum": 0}));
    let u8s = field(json!({"type": "integer", "format": "uint8", "minimum": 0, "maximum": 255}));
    check(&u("uint32"), &u8s, &[("contract_range_narrowed", "UserProfile.f", "break", "ok")]);
    let i64s = field(json!({"type": "integer", "format": "int64"}));
    assert_eq!(verdict(&i64s, &u("uint64")), ("break", "break"));
    assert_eq!(verdict(&field(json!({"type": "integer", "format": "int32"})), &i64s), ("ok", "break"));
    let opt = |f: &str| field(json!({"type": ["integer", "null"], "format": f, "minimum": 0}));
    assert_eq!(verdict(&opt("uint32"), &opt("uint8")), ("break", "ok"));
}

#[test]
fn const_and_enum() {
    check(
        &field(json!({"const": "a"})),
        &field(json!({"const": "b"})),
        &[("contract_enum_value_removed", "UserProfile.f", "break", "break")],
    );
    let e = |vs: &[&str]| field(json!({"type": "string", "enum": vs}));
    check(&e(&["V1", "V2"]), &e(&["V1"]), &[("contract_enum_value_removed", "UserProfile.f", "break", "ok")]);
    assert_eq!(verdict(&e(&["V1"]), &field(json!({"type": "string"}))), ("ok", "break"));
}

#[test]
fn enum_representations_match_variants_by_identity() {
    // Internally tagged: the tag name ("kind") is not a variant.
    let internal = |variants: &[&str]| {
        field(
            json!({"oneOf": variants.iter().map(|v| json!({"type": "object", "properties": {"kind": {"type": "string", "const": v}}, "required": ["kind"]})).collect::<Vec<_>>()}),
        )
    };
    check(
        &internal(&["A", "B"]),
        &internal(&["A"]),
        &[("contract_variant_removed", "UserProfile.f[kind=B]", "break", "ok")],
    );
    // Adjacently tagged with a changed payload, matched by tag, not by position.
    let adjacent = |a: &str, b: &str| {
        field(json!({"oneOf": [
            {"type": "object", "properties": {"t": {"type": "string", "const": "B"}, "c": {"type": b}}, "required": ["t", "c"]},
            {"type": "object", "properties": {"t": {"type": "string", "const": "A"}, "c": {"type": a}}, "required": ["t", "c"]},
        ]}))
    };
    check(
        &adjacent("string", "integer"),
        &adjacent("string", "boolean"),
        &[("contract_type_changed", "UserProfile.f[t=B].c", "break", "break")],
    );
    // Externally tagged data-carrying variant.
    let external = |ty: &str| {
        field(json!({"oneOf": [{"type": "string", "enum": ["Unit"]},
            {"type": "object", "properties": {"Data": {"type": ty}}, "required": ["Data"], "additionalProperties": false}]}))
    };
    check(
        &external("string"),
        &external("integer"),
        &[("contract_type_changed", "UserProfile.f.Data", "break", "break")],
    );
    // Untagged.
    let untagged = |tys: &[&str]| field(json!({"anyOf": tys.iter().map(|t| json!({"type": t})).collect::<Vec<_>>()}));
    assert_eq!(verdict(&untagged(&["string", "integer"]), &untagged(&["string"])), ("break", "ok"));
}

#[test]
fn maps_tuples_sets_and_open_values() {
    let map = |ty: &str| field(json!({"type": "object", "additionalProperties": {"type": ty}}));
    check(&map("integer"), &map("string"), &[("contract_type_changed", "UserProfile.f.*", "break", "break")]);
    let tuple = |a: &str, b: &str| {
        field(json!({"type": "array", "prefixItems": [{"type": a}, {"type": b}], "minItems": 2, "maxItems": 2}))
    };
    check(
        &tuple("string", "integer"),
        &tuple("string", "string"),
        &[("contract_type_changed", "UserProfile.f[1]", "break", "break")],
    );
    let tuple07 = field(
        json!({"type": "array", "items": [{"type": "string"}, {"type": "integer"}], "minItems": 2, "maxItems": 2}),
    );
    assert_eq!(verdict(&tuple07, &tuple("string", "string")), ("break", "break"));
    let vec = field(json!({"type": "array", "items": {"type": "string"}}));
    let set = field(json!({"type": "array", "items": {"type": "string"}, "uniqueItems": true}));
    assert_eq!(verdict(&vec, &set), ("ok", "ok"));
    assert_eq!(verdict(&vec, &tuple("string", "string")), ("break", "ok"));
    let any = field(json!(true));
    assert_eq!(verdict(&any, &field(json!({"type": "string"}))), ("break", "ok"));
    assert_eq!(verdict(&field(json!({})), &any), ("ok", "ok"));
}

#[test]
fn refs_in_every_local_form_and_cycles() {
    let defs = json!({"a/b": {"type": "string"}, "c~d": {"type": "integer"}, "Node": {"type": "object",
        "properties": {"next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}, "v": {"$ref": "#/$defs/a~1b"}}}});
    let s = profile(
        json!({"x": {"$ref": "#/$defs/a~1b"}, "y": {"$ref": "#/$defs/c~0d"}, "n": {"$ref": "#/$defs/Node"}, "me": {"$ref": "#"}}),
        &[],
        defs,
    );
    check(&s, &s, &[]);
    let mut changed = s.clone();
    changed["$defs"]["a/b"] = json!({"type": "boolean"});
    let got = compare(&s, &changed).unwrap();
    assert!(got.iter().any(|c| c.path.ends_with(".x") && c.new_pointer == "/$defs/a~1b"), "{got:?}");
    assert!(got.iter().all(|c| c.backward == Verdict::Breaking));
    let remote = profile(json!({"x": {"$ref": "https://example.com/s.json"}}), &[], json!({}));
    let err = compare(&s, &remote).unwrap_err();
    assert_eq!((err.side, err.pointer.as_str()), (Side::New, "/properties/x"));
    let dangling = profile(json!({"x": {"$ref": "#/$defs/Missing"}}), &[], json!({}));
    assert_eq!(compare(&dangling, &s).unwrap_err().side, Side::Old);
    // draft-07 definitions.
    let d7 = |ty: &str| {
        json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
        "properties": {"x": {"$ref": "#/definitions/X"}}, "definitions": {"X": {"type": ty}}})
    };
    assert_eq!(verdict(&d7("string"), &d7("integer")), ("break", "break"));
}

#[test]
fn unknown_keywords_in_a_changed_subschema_are_unknown() {
    let old = field(json!({"type": "string"}));
    let new = field(json!({"type": "string", "pattern": "^a"}));
    check(&old, &new, &[("contract_unknown_keyword", "UserProfile.f", "unknown", "ok")]);
    check(&new, &new, &[]);
}

#[test]
fn not_schemas() {
    let old = field(json!({"type": "string"}));
    assert_eq!(verdict(&old, &field(json!({"not": {"type": "integer"}}))), ("ok", "break"));
    assert_eq!(verdict(&old, &field(json!({"type": "string", "not": {"const": "x"}}))).0, "unknown");
    assert_eq!(verdict(&field(json!({"enum": ["a", "b"]})), &field(json!({"not": {"const": "b"}}))).0, "break");
}

#[test]
fn non_schemas_are_refused() {
    let s = field(json!({"type": "string"}));
    let err = compare(&json!([1, 2]), &s).unwrap_err();
    assert!(err.message.contains("not a JSON Schema"), "{err}");
    assert_eq!(err.side, Side::Old);
    assert!(compare(&s, &json!({"name": "x", "version": 2})).unwrap_err().message.contains("no schema keyword"));
    assert_eq!(verdict(&json!(true), &json!({"type": "string"})), ("break", "ok"));
    let err = compare(&s, &field(json!({"type": "strin"}))).unwrap_err();
    assert_eq!(err.pointer, "/properties/f");
}

#[test]
fn errors_point_at_their_file_and_line() {
    let old = "{\n  \"type\": \"object\",\n  \"properties\": {\n    \"x\": {\"$ref\": \"#/$defs/Gone\"}\n  }\n}";
    let new = "{\"type\": \"object\"}";
    let err = findings(("old.json", old), ("new.json", new)).unwrap_err();
    assert_eq!((err.location.file.as_str(), err.location.line, err.location.column), ("old.json", 4, 10));
    assert!(err.message.contains("/properties/x"), "{err}");
    assert_eq!(locate("{\"a\": [1, {\"b~c/\": 2}]}", "/a/1/b~0c~1"), (1, 20));
}
