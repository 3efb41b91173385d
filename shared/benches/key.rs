//! Cost of deriving a cache key for a typical request: normalization + SHA-256, and the
//! hash alone. Results and the command that produced them are in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use edgegen_shared::key::{CacheKey, KeyScope, NormalizedRequest, RequestParts};
use edgegen_shared::{ContractHash, Generation, SchemaVersion, TenantId};

fn scope() -> KeyScope {
    KeyScope {
        tenant: TenantId::new("acme-eu").unwrap(),
        schema_version: SchemaVersion::new("1.8.3").unwrap(),
        contract_hash: ContractHash::from_digest([0x5a; 32]),
        generation: Generation(1042),
    }
}

fn typical() -> RequestParts<'static> {
    RequestParts {
        method: "GET",
        path: "/v1/users/8f14e45f/profile",
        query: Some("include=settings&fields=name,email&lang=en"),
        vary: &[("Accept-Encoding", Some("gzip, br"))],
    }
}

fn bench(c: &mut Criterion) {
    let scope = scope();
    let parts = typical();
    let normalized = NormalizedRequest::new(&parts).unwrap();
    c.bench_function("key/normalize+derive typical GET", |b| {
        b.iter(|| {
            let req = NormalizedRequest::new(black_box(&parts)).unwrap();
            CacheKey::derive(black_box(&scope), &req)
        })
    });
    c.bench_function("key/derive only (pre-normalized)", |b| {
        b.iter(|| CacheKey::derive(black_box(&scope), black_box(&normalized)))
    });
    let dotted = RequestParts { path: "/v1/%75sers/./x/../8f14e45f/profile", ..typical() };
    c.bench_function("key/normalize+derive dotted, escaped path", |b| {
        b.iter(|| {
            let req = NormalizedRequest::new(black_box(&dotted)).unwrap();
            CacheKey::derive(black_box(&scope), &req)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
