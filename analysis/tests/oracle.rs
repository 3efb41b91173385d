//! The serde oracle: ground truth for contract compatibility. Each corpus entry is a pair of
//! Rust types (old, new) named `T` in their modules. schemars derives both schemas (draft
//! 2020-12 and draft-07); proptest generates values of the old type, serialized to JSON text
//! (as a cache stores them) and deserialized by the new type (backward), and the reverse
//! (forward). The analysis verdict must agree with serde in both directions, for both drafts.
//! A disagreement fails the test, naming the pair and a counterexample.
//!
//! The corpus is data: [`field_pairs!`] entries change one field's type; [`pairs!`] entries
//! are whole type definitions (enums in all four representations, flatten, defaults,
//! `deny_unknown_fields`, nesting). Values come from a deterministic RNG, so the run is
//! reproducible; `ORACLE_CASES` sets the values per pair and direction (default 32).

use std::fmt::Debug;

use edgegen_analysis::contract::{Verdict, compare, compatibility};
use proptest::arbitrary::Arbitrary;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

mod prelude {
    pub use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

    pub use proptest_derive::Arbitrary;
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
}

/// Arbitrary JSON for `serde_json::Value` fields.
fn json_value() -> impl Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        "[a-z]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..3).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// What serde says about one direction: `None` readable, `Some(json)` a counterexample.
fn serde_reads<P, R>(cases: u32) -> Option<String>
where
    P: Arbitrary + Serialize + DeserializeOwned,
    R: DeserializeOwned,
{
    let mut runner = TestRunner::new_with_rng(
        Config { cases, ..Config::default() },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = proptest::arbitrary::any::<P>();
    for _ in 0..cases {
        let value = strategy.new_tree(&mut runner).expect("strategy").current();
        let Ok(text) = serde_json::to_string(&value) else { continue };
        // Values the producer cannot read back itself (NaN as null, ...) are not data.
        if serde_json::from_str::<P>(&text).is_err() {
            continue;
        }
        if serde_json::from_str::<R>(&text).is_err() {
            return Some(text);
        }
    }
    None
}

fn schemas<T: JsonSchema>() -> [(&'static str, Value); 2] {
    let draft2020 = serde_json::to_value(schemars::schema_for!(T)).unwrap();
    let draft07 = serde_json::to_value(SchemaSettings::draft07().into_generator().into_root_schema_for::<T>()).unwrap();
    [("2020-12", draft2020), ("draft-07", draft07)]
}

/// One pair's outcome: disagreements, if any.
fn run<O, N>(name: &str, cases: u32) -> Vec<String>
where
    O: Arbitrary + Serialize + DeserializeOwned + JsonSchema + Debug,
    N: Arbitrary + Serialize + DeserializeOwned + JsonSchema + Debug,
{
    let backward = serde_reads::<O, N>(cases);
    let forward = serde_reads::<N, O>(cases);
    let mut out = Vec::new();
    for ((draft, old), (_, new)) in schemas::<O>().into_iter().zip(schemas::<N>()) {
        // Every schema is compatible with itself, with no change.
        for same in [&old, &new] {
            if !compare(same, same).is_ok_and(|c| c.is_empty()) {
                out.push(format!("{name} ({draft}): a schema compared with itself has changes: {same}"));
            }
        }
        let changes = match compare(&old, &new) {
            Ok(c) => c,
            Err(e) => {
                out.push(format!("{name} ({draft}): analysis error {e}"));
                continue;
            }
        };
        let verdict = compatibility(&changes);
        for (direction, analysis, oracle) in
            [("backward", verdict.backward, &backward), ("forward", verdict.forward, &forward)]
        {
            let agrees = match analysis {
                Verdict::Compatible => oracle.is_none(),
                Verdict::Breaking => oracle.is_some(),
                Verdict::Unknown => false,
            };
            if !agrees {
                out.push(format!(
                    "{name} ({draft}) {direction}: analysis {analysis:?}, serde {}; changes {:?}\n  old {old}\n  new {new}",
                    oracle.as_ref().map_or("reads every value".to_owned(), |v| format!("fails on {v}")),
                    changes.iter().map(|c| (c.code, &c.path)).collect::<Vec<_>>()
                ));
            }
        }
    }
    out
}

type Case = (&'static str, fn(&str, u32) -> Vec<String>);

/// Pairs of whole definitions: `name: [old items] => [new items];`, root type `T`.
macro_rules! pairs {
    ($( $name:ident : [ $($old:item)* ] => [ $($new:item)* ] ; )*) => {
        $(
            #[allow(dead_code, non_camel_case_types, clippy::enum_variant_names)]
            mod $name {
                pub mod old {
                    #[allow(unused_imports)]
                    use crate::prelude::*;
                    $( #[derive(Serialize, Deserialize, JsonSchema, Arbitrary, Debug)] $old )*
                }
                pub mod new {
                    #[allow(unused_imports)]
                    use crate::prelude::*;
                    $( #[derive(Serialize, Deserialize, JsonSchema, Arbitrary, Debug)] $new )*
                }
            }
        )*
        const PAIRS: &[Case] = &[ $( (stringify!($name), run::<$name::old::T, $name::new::T>) ),* ];
    };
}

/// Pairs that change one field's type: `name: OldType => NewType;`.
macro_rules! field_pairs {
    ($( $name:ident : $old:ty => $new:ty ; )*) => {
        $(
            #[allow(dead_code, non_camel_case_types)]
            mod $name {
                pub mod old {
                    #[allow(unused_imports)]
                    use crate::prelude::*;
                    #[derive(Serialize, Deserialize, JsonSchema, Arbitrary, Debug)]
                    pub struct T { pub id: u8, pub f: $old }
                }
                pub mod new {
                    #[allow(unused_imports)]
                    use crate::prelude::*;
                    #[derive(Serialize, Deserialize, JsonSchema, Arbitrary, Debug)]
                    pub struct T { pub id: u8, pub f: $new }
                }
            }
        )*
        const FIELD_PAIRS: &[Case] = &[ $( (stringify!($name), run::<$name::old::T, $name::new::T>) ),* ];
    };
}

field_pairs! {
    // Integer widths and signs (format + minimum/maximum).
    u8_u16: u8 => u16;
    u16_u8: u16 => u8;
    u32_u8: u32 => u8;
    u32_u64: u32 => u64;
    u64_u32: u64 => u32;
    i64_u64: i64 => u64;
    u64_i64: u64 => i64;
    i8_i16: i8 => i16;
    i16_i8: i16 => i8;
    i32_i64: i32 => i64;
    i64_i32: i64 => i32;
    u8_i8: u8 => i8;
    i8_u8: i8 => u8;
    i16_u16: i16 => u16;
    u32_i32: u32 => i32;
    i32_u32: i32 => u32;
    u128_u64: u128 => u64;
    i128_i64: i128 => i64;
    u64_u128: u64 => u128;
    usize_u32: usize => u32;
    isize_i64: isize => i64;
    u16_u32: u16 => u32;
    u8_u64: u8 => u64;
    u16_i32: u16 => i32;
    // Integer <-> number.
    u32_f64: u32 => f64;
    i64_f64: i64 => f64;
    f64_i64: f64 => i64;
    f32_f64: f32 => f64;
    f64_f32: f64 => f32;
    u8_f32: u8 => f32;
    f64_u8: f64 => u8;
    // Other scalar changes.
    string_char: String => char;
    char_string: char => String;
    string_u32: String => u32;
    u32_string: u32 => String;
    bool_string: bool => String;
    bool_u8: bool => u8;
    string_bool: String => bool;
    bool_bool: bool => bool;
    // Option / nullable.
    opt_u32_opt_u8: Option<u32> => Option<u8>;
    opt_u8_opt_u32: Option<u8> => Option<u32>;
    u32_opt_u32: u32 => Option<u32>;
    opt_u32_u32: Option<u32> => u32;
    opt_string_string: Option<String> => String;
    string_opt_string: String => Option<String>;
    opt_bool_opt_string: Option<bool> => Option<String>;
    opt_opt_u8_opt_u8: Option<Option<u8>> => Option<u8>;
    opt_u8_opt_opt_u8: Option<u8> => Option<Option<u8>>;
    opt_vec_vec: Option<Vec<u8>> => Vec<u8>;
    // Sequences and sets.
    vec_u32_vec_u8: Vec<u32> => Vec<u8>;
    vec_u8_vec_u32: Vec<u8> => Vec<u32>;
    vec_set: Vec<String> => BTreeSet<String>;
    set_vec: BTreeSet<String> => Vec<String>;
    vec_u32_vec_i64: Vec<u32> => Vec<i64>;
    vec_opt_vec: Vec<Option<u8>> => Vec<u8>;
    vec_vec_opt: Vec<u8> => Vec<Option<u8>>;
    vec_vec_u8_u16: Vec<Vec<u8>> => Vec<Vec<u16>>;
    vec_vec_u16_u8: Vec<Vec<u16>> => Vec<Vec<u8>>;
    vec_string_vec_char: Vec<String> => Vec<char>;
    set_u8_set_u16: BTreeSet<u8> => BTreeSet<u16>;
    set_u16_set_u8: BTreeSet<u16> => BTreeSet<u8>;
    hashset_btreeset: HashSet<String> => BTreeSet<String>;
    vec_u8_string: Vec<u8> => String;
    // Fixed arrays and tuples (prefixItems / array-form items).
    array_vec: [u8; 3] => Vec<u8>;
    vec_array: Vec<u8> => [u8; 3];
    array3_array4: [u8; 3] => [u8; 4];
    array_tuple: [u8; 2] => (u8, u8);
    tuple_array: (u8, u8) => [u8; 2];
    tuple2_tuple3: (u8, String) => (u8, String, bool);
    tuple3_tuple2: (u8, String, bool) => (u8, String);
    tuple_u8_u16: (u8, String) => (u16, String);
    tuple_u16_u8: (u16, String) => (u8, String);
    tuple_swapped: (String, u8) => (u8, String);
    tuple1_scalar: (u8,) => u8;
    vec_tuple_vec_array: Vec<(u8, u8)> => Vec<[u8; 2]>;
    tuple_opt: (u8, Option<bool>) => (u8, bool);
    array_u16_u8: [u16; 2] => [u8; 2];
    // Maps (additionalProperties as a schema).
    map_u32_map_string: BTreeMap<String, u32> => BTreeMap<String, String>;
    map_u32_map_u8: BTreeMap<String, u32> => BTreeMap<String, u8>;
    map_u8_map_u32: BTreeMap<String, u8> => BTreeMap<String, u32>;
    hashmap_btreemap: HashMap<String, u8> => BTreeMap<String, u8>;
    map_vec_u8_u16: BTreeMap<String, Vec<u8>> => BTreeMap<String, Vec<u16>>;
    map_opt_map: BTreeMap<String, Option<u8>> => BTreeMap<String, u8>;
    map_map_opt: BTreeMap<String, u8> => BTreeMap<String, Option<u8>>;
    map_vec: BTreeMap<String, String> => Vec<String>;
    map_of_maps: BTreeMap<String, BTreeMap<String, u8>> => BTreeMap<String, BTreeMap<String, i8>>;
    opt_map: Option<BTreeMap<String, u8>> => BTreeMap<String, u8>;
    // Integer-keyed maps (schemars: patternProperties).
    map_intkey_value_narrowed: BTreeMap<u32, u32> => BTreeMap<u32, u8>;
    map_intkey_signed: BTreeMap<u32, u8> => BTreeMap<i64, u8>;
    map_string_to_intkey: BTreeMap<String, u8> => BTreeMap<u32, u8>;
    // Boxes and units.
    box_plain: Box<u8> => u8;
    plain_box_u16: u8 => Box<u16>;
    unit_opt: () => Option<u8>;
    opt_unit: Option<u8> => ();
}

pairs! {
    // Structs: required / optional / defaults / closed models / renames.
    struct_required_added: [pub struct T { pub a: u8 }] => [pub struct T { pub a: u8, pub b: String }];
    struct_required_removed: [pub struct T { pub a: u8, pub b: String }] => [pub struct T { pub a: u8 }];
    struct_optional_added: [pub struct T { pub a: u8 }] => [pub struct T { pub a: u8, pub b: Option<String> }];
    struct_optional_removed: [pub struct T { pub a: u8, pub b: Option<String> }] => [pub struct T { pub a: u8 }];
    struct_default_added: [pub struct T { pub a: u8 }] => [pub struct T { pub a: u8, #[serde(default)] pub b: u32 }];
    struct_default_removed: [pub struct T { pub a: u8, #[serde(default)] pub b: u32 }] => [pub struct T { pub a: u8 }];
    struct_default_became_required: [pub struct T { pub a: u8, #[serde(default)] pub b: u32 }] => [pub struct T { pub a: u8, pub b: u32 }];
    struct_container_default: [pub struct T { pub a: u8 }] => [#[derive(Default)] #[serde(default)] pub struct T { pub a: u8, pub b: u16 }];
    struct_renamed_field: [pub struct T { pub a: u8 }] => [pub struct T { #[serde(rename = "A")] pub a: u8 }];
    struct_rename_all: [pub struct T { pub user_id: u8 }] => [#[serde(rename_all = "camelCase")] pub struct T { pub user_id: u8 }];
    struct_alias_kept: [pub struct T { pub a: u8 }] => [pub struct T { pub a: u8, pub c: Option<u8> }];
    closed_optional_added: [#[serde(deny_unknown_fields)] pub struct T { pub a: u8 }] => [#[serde(deny_unknown_fields)] pub struct T { pub a: u8, pub b: Option<u8> }];
    closed_field_removed: [pub struct T { pub a: u8, pub b: u8 }] => [#[serde(deny_unknown_fields)] pub struct T { pub a: u8 }];
    closed_now: [pub struct T { pub a: u8 }] => [#[serde(deny_unknown_fields)] pub struct T { pub a: u8 }];
    opened_now: [#[serde(deny_unknown_fields)] pub struct T { pub a: u8 }] => [pub struct T { pub a: u8 }];
    closed_default_added: [#[serde(deny_unknown_fields)] pub struct T { pub a: u8 }] => [#[serde(deny_unknown_fields)] pub struct T { pub a: u8, #[serde(default)] pub b: bool }];
    skip_if_none_closed: [pub struct T { pub a: u8, #[serde(skip_serializing_if = "Option::is_none")] pub b: Option<u8> }] => [#[serde(deny_unknown_fields)] pub struct T { pub a: u8 }];
    nested_struct_field: [pub struct I { pub x: u32 } pub struct T { pub i: I }] => [pub struct I { pub x: u8 } pub struct T { pub i: I }];
    nested_struct_added_required: [pub struct I { pub x: u8 } pub struct T { pub i: I }] => [pub struct I { pub x: u8, pub y: bool } pub struct T { pub i: I }];
    nested_vec_of_struct: [pub struct I { pub x: String } pub struct T { pub v: Vec<I> }] => [pub struct I { pub x: char } pub struct T { pub v: Vec<I> }];
    nested_map_of_struct: [pub struct I { pub x: u8 } pub struct T { pub m: BTreeMap<String, I> }] => [pub struct I { pub x: u8, pub y: Option<u8> } pub struct T { pub m: BTreeMap<String, I> }];
    nested_option_struct: [pub struct I { pub x: u8 } pub struct T { pub o: Option<I> }] => [pub struct I { pub x: u8 } pub struct T { pub o: I }];
    struct_to_newtype: [pub struct T { pub a: u8 }] => [pub struct T(pub u8);];
    newtype_widened: [pub struct T(pub u8);] => [pub struct T(pub u16);];
    newtype_narrowed: [pub struct T(pub u16);] => [pub struct T(pub u8);];
    tuple_struct_grew: [pub struct T(pub u8, pub bool);] => [pub struct T(pub u8, pub bool, pub u8);];
    tuple_struct_to_vec: [pub struct T(pub u8, pub u8);] => [pub struct T(pub Vec<u8>);];
    unit_struct_to_option: [pub struct T;] => [pub struct T(pub Option<u8>);];
    same_struct: [pub struct T { pub a: u8, pub b: Vec<String> }] => [pub struct T { pub a: u8, pub b: Vec<String> }];
    json_value_to_string: [pub struct T { #[proptest(strategy = "crate::json_value()")] pub v: serde_json::Value }] => [pub struct T { pub v: String }];
    string_to_json_value: [pub struct T { pub v: String }] => [pub struct T { #[proptest(strategy = "crate::json_value()")] pub v: serde_json::Value }];
    json_value_to_map: [pub struct T { #[proptest(strategy = "crate::json_value()")] pub v: serde_json::Value }] => [pub struct T { pub v: BTreeMap<String, u8> }];

    // Externally tagged enums.
    ext_unit_removed: [pub enum T { A, B, C }] => [pub enum T { A, B }];
    ext_unit_added: [pub enum T { A, B }] => [pub enum T { A, B, C }];
    ext_unit_renamed: [pub enum T { A, B }] => [pub enum T { A, #[serde(rename = "b")] B }];
    ext_rename_all: [pub enum T { FooBar, Baz }] => [#[serde(rename_all = "snake_case")] pub enum T { FooBar, Baz }];
    ext_newtype_payload_changed: [pub enum T { A(u32), B(String) }] => [pub enum T { A(u8), B(String) }];
    ext_newtype_payload_widened: [pub enum T { A(u8), B(String) }] => [pub enum T { A(u32), B(String) }];
    ext_struct_variant_field_added: [pub enum T { A { x: u8 }, B }] => [pub enum T { A { x: u8, y: bool }, B }];
    ext_struct_variant_optional_added: [pub enum T { A { x: u8 }, B }] => [pub enum T { A { x: u8, y: Option<bool> }, B }];
    ext_tuple_variant_grew: [pub enum T { A(u8, u8), B }] => [pub enum T { A(u8, u8, u8), B }];
    ext_data_variant_removed: [pub enum T { A(u8), B(bool), C }] => [pub enum T { A(u8), C }];
    ext_data_variant_added: [pub enum T { A(u8), C }] => [pub enum T { A(u8), B(bool), C }];
    ext_unit_to_newtype: [pub enum T { A, B(u8) }] => [pub enum T { A(u8), B(u8) }];
    ext_only_units_to_data: [pub enum T { A, B }] => [pub enum T { A, B, C(String) }];
    ext_variant_payload_option: [pub enum T { A(Option<u8>), B }] => [pub enum T { A(u8), B }];
    ext_same: [pub enum T { A(u8), B { s: String }, C }] => [pub enum T { A(u8), B { s: String }, C }];
    ext_nested_enum: [pub enum E { X, Y } pub enum T { A(E), B }] => [pub enum E { X } pub enum T { A(E), B }];
    ext_deny_unknown_struct_variant: [pub enum T { A { x: u8 }, B }] => [#[serde(deny_unknown_fields)] pub enum T { A { x: u8 }, B }];
    ext_in_vec: [pub enum E { X, Y, Z } pub struct T { pub v: Vec<E> }] => [pub enum E { X, Z } pub struct T { pub v: Vec<E> }];
    ext_in_map: [pub enum E { X(u8), Y } pub struct T { pub m: BTreeMap<String, E> }] => [pub enum E { X(u16), Y } pub struct T { pub m: BTreeMap<String, E> }];
    ext_option_of_enum: [pub enum E { X, Y } pub struct T { pub e: Option<E> }] => [pub enum E { X, Y } pub struct T { pub e: E }];

    // Internally tagged enums: the tag is not a variant.
    int_variant_removed: [#[serde(tag = "kind")] pub enum T { A { x: u8 }, B { y: String } }] => [#[serde(tag = "kind")] pub enum T { A { x: u8 } }];
    int_variant_added: [#[serde(tag = "kind")] pub enum T { A { x: u8 } }] => [#[serde(tag = "kind")] pub enum T { A { x: u8 }, B { y: String } }];
    int_unit_variant_removed: [#[serde(tag = "kind")] pub enum T { A, B, C }] => [#[serde(tag = "kind")] pub enum T { A, C }];
    int_field_changed: [#[serde(tag = "kind")] pub enum T { A { x: u32 }, B { y: String } }] => [#[serde(tag = "kind")] pub enum T { A { x: u8 }, B { y: String } }];
    int_field_changed_second: [#[serde(tag = "kind")] pub enum T { A { x: u8 }, B { y: String } }] => [#[serde(tag = "kind")] pub enum T { A { x: u8 }, B { y: bool } }];
    int_field_added_optional: [#[serde(tag = "kind")] pub enum T { A { x: u8 }, B }] => [#[serde(tag = "kind")] pub enum T { A { x: u8, z: Option<u8> }, B }];
    int_field_added_required: [#[serde(tag = "kind")] pub enum T { A { x: u8 }, B }] => [#[serde(tag = "kind")] pub enum T { A { x: u8, z: u8 }, B }];
    int_tag_renamed: [#[serde(tag = "kind")] pub enum T { A { x: u8 }, B }] => [#[serde(tag = "type")] pub enum T { A { x: u8 }, B }];
    int_variant_renamed: [#[serde(tag = "kind")] pub enum T { A { x: u8 }, B }] => [#[serde(tag = "kind")] pub enum T { #[serde(rename = "a")] A { x: u8 }, B }];
    int_newtype_struct: [pub struct P { pub x: u8 } #[serde(tag = "kind")] pub enum T { A(P), B }] => [pub struct P { pub x: u16 } #[serde(tag = "kind")] pub enum T { A(P), B }];
    int_newtype_struct_narrowed: [pub struct P { pub x: u16 } #[serde(tag = "kind")] pub enum T { A(P), B }] => [pub struct P { pub x: u8 } #[serde(tag = "kind")] pub enum T { A(P), B }];
    int_same: [#[serde(tag = "kind")] pub enum T { A { x: u8 }, B { y: String }, C }] => [#[serde(tag = "kind")] pub enum T { A { x: u8 }, B { y: String }, C }];
    int_to_external: [#[serde(tag = "kind")] pub enum T { A { x: u8 }, B }] => [pub enum T { A { x: u8 }, B }];
    int_deny_unknown: [#[serde(tag = "kind")] pub enum T { A { x: u8, y: u8 }, B }] => [#[serde(tag = "kind", deny_unknown_fields)] pub enum T { A { x: u8 }, B }];
    int_in_struct: [#[serde(tag = "kind")] pub enum E { A { x: u8 }, B } pub struct T { pub e: E, pub n: u8 }] => [#[serde(tag = "kind")] pub enum E { A { x: u8 } } pub struct T { pub e: E, pub n: u8 }];
    int_vec_of: [#[serde(tag = "kind")] pub enum E { A { x: u32 }, B } pub struct T { pub v: Vec<E> }] => [#[serde(tag = "kind")] pub enum E { A { x: u64 }, B } pub struct T { pub v: Vec<E> }];

    // Adjacently tagged.
    adj_variant_removed: [#[serde(tag = "t", content = "c")] pub enum T { A(u8), B(String) }] => [#[serde(tag = "t", content = "c")] pub enum T { A(u8) }];
    adj_variant_added: [#[serde(tag = "t", content = "c")] pub enum T { A(u8) }] => [#[serde(tag = "t", content = "c")] pub enum T { A(u8), B(String) }];
    adj_payload_changed: [#[serde(tag = "t", content = "c")] pub enum T { A(u8), B(String) }] => [#[serde(tag = "t", content = "c")] pub enum T { A(u8), B(bool) }];
    adj_payload_widened: [#[serde(tag = "t", content = "c")] pub enum T { A(u8), B(String) }] => [#[serde(tag = "t", content = "c")] pub enum T { A(u32), B(String) }];
    adj_unit_variant_removed: [#[serde(tag = "t", content = "c")] pub enum T { A, B, C(u8) }] => [#[serde(tag = "t", content = "c")] pub enum T { A, C(u8) }];
    adj_struct_variant_field: [#[serde(tag = "t", content = "c")] pub enum T { A { x: u8 }, B }] => [#[serde(tag = "t", content = "c")] pub enum T { A { x: u8, y: String }, B }];
    adj_content_renamed: [#[serde(tag = "t", content = "c")] pub enum T { A(u8), B }] => [#[serde(tag = "t", content = "data")] pub enum T { A(u8), B }];
    adj_same: [#[serde(tag = "t", content = "c")] pub enum T { A(u8), B(String), C }] => [#[serde(tag = "t", content = "c")] pub enum T { A(u8), B(String), C }];
    adj_to_internal: [#[serde(tag = "t", content = "c")] pub enum T { A { x: u8 }, B }] => [#[serde(tag = "t")] pub enum T { A { x: u8 }, B }];

    // Untagged.
    untagged_variant_removed: [#[serde(untagged)] pub enum T { A(u8), B(String) }] => [#[serde(untagged)] pub enum T { A(u8) }];
    untagged_variant_added: [#[serde(untagged)] pub enum T { A(u8) }] => [#[serde(untagged)] pub enum T { A(u8), B(String) }];
    untagged_widened: [#[serde(untagged)] pub enum T { A(u8), B(String) }] => [#[serde(untagged)] pub enum T { A(u32), B(String) }];
    untagged_struct_variants: [#[serde(untagged)] pub enum T { A { x: u8 }, B { y: String } }] => [#[serde(untagged)] pub enum T { A { x: u8 }, B { y: bool } }];
    untagged_struct_required: [#[serde(untagged)] pub enum T { A { x: u8 }, B { y: String } }] => [#[serde(untagged)] pub enum T { A { x: u8, z: u8 }, B { y: String } }];
    untagged_to_plain: [#[serde(untagged)] pub enum T { A(u8), B(bool) }] => [pub struct T(pub u8);];
    plain_to_untagged: [pub struct T(pub u8);] => [#[serde(untagged)] pub enum T { A(u8), B(bool) }];
    untagged_nullable: [#[serde(untagged)] pub enum T { A(u8), B(Option<String>) }] => [#[serde(untagged)] pub enum T { A(u8), B(String) }];
    untagged_same: [#[serde(untagged)] pub enum T { A(u8), B(String) }] => [#[serde(untagged)] pub enum T { A(u8), B(String) }];

    // Flatten.
    flatten_inner_changed: [pub struct I { pub x: u32 } pub struct T { pub a: u8, #[serde(flatten)] pub i: I }] => [pub struct I { pub x: u8 } pub struct T { pub a: u8, #[serde(flatten)] pub i: I }];
    flatten_inner_added_required: [pub struct I { pub x: u8 } pub struct T { pub a: u8, #[serde(flatten)] pub i: I }] => [pub struct I { pub x: u8, pub y: u8 } pub struct T { pub a: u8, #[serde(flatten)] pub i: I }];
    flatten_unflattened: [pub struct I { pub x: u8 } pub struct T { pub a: u8, #[serde(flatten)] pub i: I }] => [pub struct T { pub a: u8, pub x: u8 }];
    flatten_option: [pub struct I { pub x: u8 } pub struct T { pub a: u8, #[serde(flatten)] pub i: Option<I> }] => [pub struct I { pub x: u8 } pub struct T { pub a: u8, #[serde(flatten)] pub i: I }];
    flatten_map_extra: [pub struct T { pub a: u8, #[serde(flatten)] pub rest: BTreeMap<String, u8> }] => [pub struct T { pub a: u8, #[serde(flatten)] pub rest: BTreeMap<String, u16> }];
    flatten_map_narrowed: [pub struct T { pub a: u8, #[serde(flatten)] pub rest: BTreeMap<String, u16> }] => [pub struct T { pub a: u8, #[serde(flatten)] pub rest: BTreeMap<String, u8> }];
    flatten_map_removed: [pub struct T { pub a: u8, #[serde(flatten)] pub rest: BTreeMap<String, u8> }] => [pub struct T { pub a: u8 }];
    flatten_enum: [pub enum E { X(u8), Y(String) } pub struct T { pub a: u8, #[serde(flatten)] pub e: E }] => [pub enum E { X(u8) } pub struct T { pub a: u8, #[serde(flatten)] pub e: E }];
    flatten_internal_enum: [#[serde(tag = "kind")] pub enum E { X { x: u8 }, Y { y: u8 } } pub struct T { pub a: u8, #[serde(flatten)] pub e: E }] => [#[serde(tag = "kind")] pub enum E { X { x: u8 }, Y { y: u16 } } pub struct T { pub a: u8, #[serde(flatten)] pub e: E }];
    flatten_same: [pub struct I { pub x: u8 } pub struct T { pub a: u8, #[serde(flatten)] pub i: I }] => [pub struct I { pub x: u8 } pub struct T { pub a: u8, #[serde(flatten)] pub i: I }];

    // Nestings across constructs.
    nest_vec_opt_enum: [pub enum E { A, B } pub struct T { pub v: Vec<Option<E>> }] => [pub enum E { A, B } pub struct T { pub v: Vec<E> }];
    nest_map_tuple: [pub struct T { pub m: BTreeMap<String, (u8, bool)> }] => [pub struct T { pub m: BTreeMap<String, (u8, String)> }];
    nest_tuple_of_enums: [pub enum E { A(u8), B } pub struct T { pub t: (E, E) }] => [pub enum E { A(u16), B } pub struct T { pub t: (E, E) }];
    nest_enum_of_maps: [pub enum T { M(BTreeMap<String, u32>), N }] => [pub enum T { M(BTreeMap<String, u8>), N }];
    nest_enum_of_vec_struct: [pub struct I { pub x: u8 } pub enum T { V(Vec<I>), N }] => [pub struct I { pub x: u8, pub y: String } pub enum T { V(Vec<I>), N }];
    nest_int_with_map: [#[serde(tag = "kind")] pub enum T { A { m: BTreeMap<String, u8> }, B }] => [#[serde(tag = "kind")] pub enum T { A { m: BTreeMap<String, String> }, B }];
    nest_adj_with_tuple: [#[serde(tag = "t", content = "c")] pub enum T { A((u8, u8)), B }] => [#[serde(tag = "t", content = "c")] pub enum T { A((u8, u8, u8)), B }];
    nest_untagged_of_structs: [pub struct P { pub x: u8 } #[serde(untagged)] pub enum T { P(P), S(String) }] => [pub struct P { pub x: u8, pub y: u8 } #[serde(untagged)] pub enum T { P(P), S(String) }];
    nest_option_map_opt: [pub struct T { pub m: Option<BTreeMap<String, Option<u8>>> }] => [pub struct T { pub m: Option<BTreeMap<String, u8>> }];
    nest_deep_same: [pub enum E { A([u8; 2]), B { m: Option<bool> } } pub struct T { pub v: (E, E), pub o: Option<(E, u8)> }] => [pub enum E { A([u8; 2]), B { m: Option<bool> } } pub struct T { pub v: (E, E), pub o: Option<(E, u8)> }];
    nest_set_of_enum: [pub enum E { A, B, C } pub struct T { pub s: BTreeSet<u8>, pub e: Vec<E> }] => [pub enum E { A, B, C, D } pub struct T { pub s: BTreeSet<u8>, pub e: Vec<E> }];
    nest_closed_enum_struct: [#[serde(deny_unknown_fields)] pub struct I { pub x: u8 } pub enum T { A(I), B }] => [#[serde(deny_unknown_fields)] pub struct I { pub x: u8, pub y: Option<u8> } pub enum T { A(I), B }];
    map_intkey_struct_changed: [pub struct I { pub x: u8 } pub struct T { pub m: BTreeMap<u16, I> }] => [pub struct I { pub x: u8, pub y: bool } pub struct T { pub m: BTreeMap<u16, I> }];
    map_enumkey_variant_removed: [#[derive(PartialEq, Eq, PartialOrd, Ord)] pub enum E { A, B, C } pub struct T { pub m: BTreeMap<E, u8> }] => [#[derive(PartialEq, Eq, PartialOrd, Ord)] pub enum E { A, B } pub struct T { pub m: BTreeMap<E, u8> }];
    flatten_option_enum: [pub enum E { X(u8), Y(String) } pub struct T { pub a: u8, #[serde(flatten)] pub e: Option<E> }] => [pub enum E { X(u8) } pub struct T { pub a: u8, #[serde(flatten)] pub e: Option<E> }];
    untagged_unit_variant_removed: [#[serde(untagged)] pub enum T { A(u8), B }] => [#[serde(untagged)] pub enum T { A(u8) }];
    adj_units_only_removed: [#[serde(tag = "t", content = "c")] pub enum T { A, B }] => [#[serde(tag = "t", content = "c")] pub enum T { A }];
    int_rename_all: [#[serde(tag = "kind")] pub enum T { FooBar { x: u8 }, Baz }] => [#[serde(tag = "kind", rename_all = "kebab-case")] pub enum T { FooBar { x: u8 }, Baz }];
    ext_unit_to_struct_same_name: [pub enum T { A, B(u8) }] => [pub enum T { A {}, B(u8) }];
    user_profile_legacy_variant: [#[serde(tag = "kind")] pub enum V { V1 { email: String }, V2 { email: String, phone: Option<String> } } pub struct T { pub id: u64, pub profile: V }] => [#[serde(tag = "kind")] pub enum V { V1 { email: String }, V3 { email: String, phone: Option<String>, verified: bool } } pub struct T { pub id: u64, pub profile: V }];
}

#[test]
fn the_analysis_agrees_with_serde_on_every_pair() {
    let cases: u32 = std::env::var("ORACLE_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(32);
    let all: Vec<&Case> = FIELD_PAIRS.iter().chain(PAIRS).collect();
    let mut disagreements = Vec::new();
    for (name, run) in &all {
        let t = std::time::Instant::now();
        disagreements.extend(run(name, cases));
        if std::env::var("ORACLE_TIMES").is_ok() {
            println!("{name}: {:?}", t.elapsed());
        }
    }
    let pairs = all.len();
    // Each pair is judged 4 times: backward and forward, draft 2020-12 and draft-07.
    let checks = pairs * 4;
    println!(
        "oracle: {}/{checks} verdicts agree over {pairs} pairs ({cases} values per pair and direction)",
        checks - disagreements.len()
    );
    assert!(pairs >= 150, "the corpus has {pairs} pairs");
    assert!(disagreements.is_empty(), "{} disagreement(s):\n{}", disagreements.len(), disagreements.join("\n"));
}
