//! Property tests for the "for all" claims of the cache: stored records never decode into
//! something else, an entry of another scope is never a candidate, field values read the
//! same however they are split into lines, and equivalent `Accept-Encoding` values select one
//! variant.

use edgegen_shared::key::KeyScope;
use edgegen_shared::metadata::ObjectMetadata;
use edgegen_shared::{ContractHash, Generation, SchemaVersion, TenantId};
use proptest::prelude::*;

use crate::decision::{Found, judge_found};
use crate::fields::{Directives, Headers};
use crate::freshness::Timing;
use crate::pipeline::normalized_vary_value;
use crate::stored::{Record, StoredHead};

fn scope(tenant: &str, generation: u64, contract: u8) -> KeyScope {
    KeyScope {
        tenant: TenantId::new(tenant).unwrap(),
        schema_version: SchemaVersion::new("1.8.3").unwrap(),
        contract_hash: ContractHash::from_digest([contract; 32]),
        generation: Generation(generation),
    }
}

fn object(scope: &KeyScope, lifetime: u64, swr: u64, sie: u64) -> Vec<u8> {
    let timing = Timing {
        response_time_ms: 1,
        initial_age: 0,
        lifetime,
        stale_while_revalidate: swr,
        stale_if_error: sie,
        no_cache: false,
        must_revalidate: false,
    };
    let head = StoredHead {
        metadata: ObjectMetadata::new(scope, 1),
        status: 200,
        body_len: 1,
        timing,
        headers: Headers::new(),
    };
    Record::Object(head).encode()
}

proptest! {
    #[test]
    fn arbitrary_metadata_never_panics_and_is_never_served(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let current = scope("acme", 7, 1);
        let _ = Record::decode(&bytes);
        if let Found::Serve(head) = judge_found(&bytes, &current) {
            prop_assert!(head.metadata.matches(&current));
        }
    }

    #[test]
    fn scoped_decoding_equals_decoding_then_matching(
        generation in 6u64..9,
        tenant in prop::sample::select(vec!["acme", "beta"]),
        index in any::<bool>(),
        corrupt in proptest::option::of((any::<prop::sample::Index>(), 1u8..=255)),
    ) {
        let current = scope("acme", 7, 1);
        let stored = scope(tenant, generation, 1);
        let mut bytes = if index {
            Record::VaryIndex { metadata: ObjectMetadata::new(&stored, 3), names: vec!["accept".into()], variants: vec![[1; 32]] }.encode()
        } else {
            object(&stored, 60, 0, 0)
        };
        if let Some((at, flip)) = corrupt {
            let at = at.index(bytes.len());
            bytes[at] ^= flip;
        }
        let expected = Record::decode(&bytes).ok().filter(|r| match r {
            Record::Object(head) => head.metadata.matches(&current),
            Record::VaryIndex { metadata, .. } => metadata.matches(&current),
            Record::Tombstone => true,
        });
        prop_assert_eq!(Record::decode_in_scope(&bytes, &current).ok(), expected);
    }

    #[test]
    fn another_scope_is_never_a_candidate(
        generation in 0u64..20,
        contract in 0u8..3,
        tenant in prop::sample::select(vec!["acme", "beta"]),
        lifetime in 0u64..1000, swr in 0u64..1000, sie in 0u64..1000,
    ) {
        let current = scope("acme", 7, 1);
        let other = scope(tenant, generation, contract);
        let verdict = judge_found(&object(&other, lifetime, swr, sie), &current);
        if other == current {
            prop_assert!(matches!(verdict, Found::Serve(_)));
        } else {
            prop_assert_eq!(verdict, Found::Reject);
        }
    }

    #[test]
    fn directives_read_the_same_however_the_lines_are_split(
        members in proptest::collection::vec(prop::sample::select(vec![
            "max-age=60", "s-maxage=5", "private", "no-store", "no-cache", "public",
            "stale-while-revalidate=9", "must-revalidate", "x-ext=\"a,b\"",
        ]), 1..6),
        split in 0usize..6,
    ) {
        let split = split.min(members.len());
        let one_line = members.join(", ");
        let mut h = Headers::new();
        for part in [&members[..split], &members[split..]] {
            if !part.is_empty() {
                h.append("cache-control", part.join(", ").into_bytes());
            }
        }
        prop_assert_eq!(Directives::of(&h, "cache-control").unwrap(), Directives::parse(&one_line));
    }

    #[test]
    fn equivalent_accept_encodings_select_one_variant(
        codings in proptest::collection::vec(prop::sample::select(vec!["gzip", "br", "zstd", "deflate"]), 1..5),
        upper in any::<bool>(),
        spaces in any::<bool>(),
    ) {
        let mut shuffled = codings.clone();
        shuffled.reverse();
        let sep = if spaces { " ,  " } else { "," };
        let mut a = Headers::new();
        a.append("accept-encoding", codings.join(", ").into_bytes());
        let mut b = Headers::new();
        let text = shuffled.join(sep);
        b.append("accept-encoding", if upper { text.to_uppercase() } else { text }.into_bytes());
        prop_assert_eq!(normalized_vary_value("accept-encoding", &a), normalized_vary_value("accept-encoding", &b));
    }
}
