//! The native per-request decision path of the edge, as a HIT pays it: cacheability,
//! normalization and key derivation, and the verdict on the found object's stored metadata;
//! and, as a MISS pays it, the origin contract check and the response TTL.
//! Results and the command are in BENCHMARKS.md (target ≤ 2 µs per request).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use edgegen_edge::decision::{self, Found};
use edgegen_edge::policy;
use edgegen_edge::stored::StoredHead;
use edgegen_shared::key::{CacheKey, KeyScope, NormalizedRequest, RequestParts};
use edgegen_shared::metadata::ObjectMetadata;
use edgegen_shared::{ContractHash, Generation, SchemaVersion, TenantId};

fn bench(c: &mut Criterion) {
    let scope = KeyScope {
        tenant: TenantId::new("acme-eu").unwrap(),
        schema_version: SchemaVersion::new("1.8.3").unwrap(),
        contract_hash: ContractHash::from_digest([0x5a; 32]),
        generation: Generation(1042),
    };
    let stored = StoredHead {
        metadata: ObjectMetadata::new(&scope, 1_790_000_000_000),
        status: 200,
        headers: vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("cache-control".into(), b"public, max-age=60".to_vec()),
            ("etag".into(), b"\"8f14e45f\"".to_vec()),
        ],
    }
    .encode();
    let contract = scope.contract_hash.to_string();

    c.bench_function("edge/hit decision (cacheable + key + found verdict)", |b| {
        b.iter(|| {
            let cacheable = policy::request_cacheable(black_box("GET"), false, false, false);
            let req = NormalizedRequest::new(&RequestParts {
                method: "GET",
                path: black_box("/v1/users/8f14e45f/profile"),
                query: Some(black_box("include=settings&fields=name,email&lang=en")),
                vary: &[],
            })
            .unwrap();
            let key = CacheKey::derive(&scope, &req);
            let verdict = decision::judge_found(black_box(&stored), &scope);
            assert!(cacheable && matches!(verdict, Found::Serve(_)));
            key
        })
    });
    c.bench_function("edge/miss extras (contract check + ttl)", |b| {
        b.iter(|| {
            let check =
                decision::check_origin_contract(&scope, Some(black_box("1.8.3")), Some(black_box(&contract)), false);
            let ttl = policy::response_ttl_secs(200, Some(black_box("public, max-age=60")), false, None);
            (check, ttl)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
