//! Property tests for the "for every input" claims of `edgegen-shared`:
//! key encodings are injective, normalization is idempotent, signatures round-trip and any
//! altered byte fails, metadata decoding never panics.

use edgegen_shared::key::{CacheKey, KeyScope, NormalizedRequest, RequestParts, normalize_path, normalize_query};
use edgegen_shared::lease::{self, Lease};
use edgegen_shared::manifest::{self, Manifest};
use edgegen_shared::metadata::ObjectMetadata;
use edgegen_shared::probe;
use edgegen_shared::{ContractHash, Generation, ReleaseId, SchemaVersion, SecretKey, TenantId};
use proptest::prelude::*;

fn tenant() -> impl Strategy<Value = TenantId> {
    "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?".prop_map(|s| TenantId::new(s).unwrap())
}

fn scope() -> impl Strategy<Value = KeyScope> {
    (tenant(), (0u32..20, 0u32..20, 0u32..20), any::<[u8; 32]>(), any::<u64>()).prop_map(
        |(tenant, (major, minor, patch), digest, generation)| KeyScope {
            tenant,
            schema_version: SchemaVersion { major, minor, patch },
            contract_hash: ContractHash::from_digest(digest),
            generation: Generation(generation),
        },
    )
}

/// Paths over the characters that matter to normalization: separators, dots, escapes
/// (valid and of every case), `;`, and ordinary characters.
fn raw_path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("/".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just(";".to_owned()),
            Just("%2F".to_owned()),
            Just("%2e".to_owned()),
            Just("%3B".to_owned()),
            Just("%5C".to_owned()),
            Just("//".to_owned()),
            Just("\\".to_owned()),
            "%[0-9a-fA-F]{2}",
            "[a-zA-Z0-9~_+=-]{1,4}",
        ],
        0..12,
    )
    .prop_map(|parts| format!("/{}", parts.concat()))
}

fn raw_query() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![Just("&".to_owned()), Just("=".to_owned()), "%[0-9a-fA-F]{2}", "[a-c+]{1,3}"],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

fn request() -> impl Strategy<Value = NormalizedRequest> {
    let vary = prop::collection::btree_map("[a-d]{1,3}", prop::option::of("[ -~]{0,6}"), 0..3);
    (prop_oneof![Just("GET"), Just("HEAD"), Just("POST")], raw_path(), prop::option::of(raw_query()), vary).prop_map(
        |(method, path, query, vary)| {
            let vary: Vec<(&str, Option<&str>)> = vary.iter().map(|(n, v)| (n.as_str(), v.as_deref())).collect();
            NormalizedRequest::new(&RequestParts { method, path: &path, query: query.as_deref(), vary: &vary })
                .expect("generated requests are keyable")
        },
    )
}

/// Decodes a key preimage back into its fields: if this inverse exists, the encoding is
/// injective (two tuples with one preimage would decode to one tuple).
fn decode_preimage(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    const TAG: &[u8] = b"edgegen/key/v1";
    assert!(bytes.starts_with(TAG));
    bytes = &bytes[TAG.len()..];
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        fields.push(bytes[4..4 + len].to_vec());
        bytes = &bytes[4 + len..];
    }
    fields
}

fn fields_of(scope: &KeyScope, req: &NormalizedRequest) -> Vec<Vec<u8>> {
    let mut fields = vec![
        scope.tenant.as_str().as_bytes().to_vec(),
        scope.schema_version.to_string().into_bytes(),
        scope.contract_hash.digest().to_vec(),
        scope.generation.0.to_be_bytes().to_vec(),
        req.method().as_bytes().to_vec(),
        req.path().as_bytes().to_vec(),
        req.query().as_bytes().to_vec(),
        (req.vary().len() as u64).to_be_bytes().to_vec(),
    ];
    for (name, value) in req.vary() {
        fields.push(name.as_bytes().to_vec());
        match value {
            None => fields.push(vec![0]),
            Some(v) => {
                fields.push(vec![1]);
                fields.push(v.as_bytes().to_vec());
            }
        }
    }
    fields
}

fn key() -> SecretKey {
    SecretKey::new("prop", "property-test-key-0123456789abcdef0123").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn key_preimage_decodes_to_its_fields(scope in scope(), req in request()) {
        let preimage = CacheKey::preimage(&scope, &req);
        prop_assert_eq!(decode_preimage(&preimage), fields_of(&scope, &req));
    }

    #[test]
    fn distinct_tuples_never_share_an_encoding(a in (scope(), request()), b in (scope(), request())) {
        let same_tuple = a.0 == b.0 && a.1 == b.1;
        let same_preimage = CacheKey::preimage(&a.0, &a.1) == CacheKey::preimage(&b.0, &b.1);
        prop_assert_eq!(same_tuple, same_preimage);
        prop_assert_eq!(same_tuple, CacheKey::derive(&a.0, &a.1) == CacheKey::derive(&b.0, &b.1));
    }

    /// Near misses: one byte moved across a field boundary (path→query, vary name→value)
    /// always changes the encoding — random pairs almost never test this.
    #[test]
    fn moving_a_byte_across_a_field_boundary_changes_the_encoding(
        scope in scope(),
        path in "/[a-z]{1,8}",
        query in "[a-z]{0,8}",
        name in "[a-z]{2,8}",
        value in "[a-z]{0,8}",
    ) {
        let key = |p: &str, q: &str, vary: &[(&str, Option<&str>)]| {
            let req = NormalizedRequest::new(&RequestParts { method: "GET", path: p, query: Some(q), vary }).unwrap();
            CacheKey::preimage(&scope, &req)
        };
        let (head, last) = path.split_at(path.len() - 1);
        if head.len() > 1 {
            prop_assert_ne!(key(&path, &query, &[]), key(head, &format!("{last}{query}"), &[]));
        }
        let (n_head, n_last) = name.split_at(name.len() - 1);
        let moved = format!("{n_last}{value}");
        prop_assert_ne!(key(&path, &query, &[(&name, Some(&value))]), key(&path, &query, &[(n_head, Some(&moved))]));
    }

    #[test]
    fn path_normalization_is_idempotent(path in raw_path()) {
        let once = normalize_path(&path).unwrap();
        prop_assert_eq!(normalize_path(&once).unwrap(), once.clone(), "from {:?}", path);
        prop_assert!(once.starts_with('/'));
    }

    #[test]
    fn query_normalization_is_idempotent(query in raw_query()) {
        let once = normalize_query(&query).unwrap();
        prop_assert_eq!(normalize_query(&once).unwrap(), once.clone(), "from {:?}", query);
    }

    #[test]
    fn normalization_never_panics(path in "\\PC{0,40}", query in "\\PC{0,40}") {
        let _ = normalize_path(&path);
        let _ = normalize_query(&query);
    }

    #[test]
    fn manifest_round_trips_and_any_flipped_byte_fails(
        scope in scope(),
        release in prop::option::of("[a-z0-9_]{1,10}"),
        issued_at in any::<u64>(),
        max_age_ms in 1..=manifest::MAX_MAX_AGE_MS,
        flip_at in any::<prop::sample::Index>(),
        flip_with in 1u8..=255,
    ) {
        let m = Manifest {
            format: 1,
            tenant: scope.tenant.clone(),
            generation: Generation(scope.generation.0.max(1)),
            schema_version: scope.schema_version,
            contract_hash: scope.contract_hash,
            release_id: release.map(|r| ReleaseId::new(r).unwrap()),
            issued_at,
            max_age_ms,
            max_stale_ms: None,
        };
        let body = m.sign(&key());
        prop_assert_eq!(manifest::verify(body.as_bytes(), &key(), &m.tenant), Ok(m.clone()));
        let mut altered = body.into_bytes();
        let i = flip_at.index(altered.len());
        altered[i] ^= flip_with;
        prop_assert!(manifest::verify(&altered, &key(), &m.tenant).is_err(), "byte {} altered", i);
    }

    #[test]
    fn lease_round_trips_and_any_flipped_byte_fails(
        scope in scope(),
        issued_at in 0u64..4_000_000_000_000,
        max_age_ms in 1..=manifest::MAX_MAX_AGE_MS,
        extra_stale in 0..=manifest::MAX_MAX_STALE_MS - manifest::MAX_MAX_AGE_MS,
        flip_at in any::<prop::sample::Index>(),
        flip_with in 1u8..=127,
    ) {
        let m = Manifest {
            format: 1,
            tenant: scope.tenant.clone(),
            generation: Generation(scope.generation.0.max(1)),
            schema_version: scope.schema_version,
            contract_hash: scope.contract_hash,
            release_id: None,
            issued_at,
            max_age_ms,
            max_stale_ms: Some(max_age_ms + extra_stale),
        };
        let lease = Lease::new(&m, issued_at, max_age_ms, max_age_ms + extra_stale);
        let header = lease.sign(&key());
        prop_assert_eq!(lease::verify(&header, &key(), &m, issued_at, 0), Ok(lease));
        let mut altered = header.into_bytes();
        let i = flip_at.index(altered.len());
        altered[i] ^= flip_with;
        let altered = String::from_utf8(altered).unwrap();
        prop_assert!(lease::verify(&altered, &key(), &m, issued_at, 0).is_err(), "byte {} altered: {}", i, altered);
    }

    #[test]
    fn probe_token_round_trips_and_any_flipped_byte_fails(
        tenant in tenant(),
        now in 0u64..4_000_000_000,
        ttl in 1u64..=86_400,
        flip_at in any::<prop::sample::Index>(),
        flip_with in 1u8..=127,
    ) {
        let token = probe::mint(&tenant, now, now + ttl, &key()).unwrap();
        prop_assert!(probe::verify(&token, &tenant, now, &key()).is_ok());
        let mut altered = token.into_bytes();
        let i = flip_at.index(altered.len());
        altered[i] ^= flip_with;
        // Flipping within ASCII keeps the token a string; anything else is malformed anyway.
        let altered = String::from_utf8(altered).unwrap();
        prop_assert!(probe::verify(&altered, &tenant, now, &key()).is_err(), "byte {} altered: {}", i, altered);
    }

    #[test]
    fn metadata_round_trips(scope in scope(), stored_at in any::<u64>()) {
        let m = ObjectMetadata::new(&scope, stored_at);
        prop_assert_eq!(ObjectMetadata::decode(&m.encode()), Ok(m.clone()));
        prop_assert!(m.matches(&scope));
    }

    #[test]
    fn metadata_decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = ObjectMetadata::decode(&bytes);
    }
}
