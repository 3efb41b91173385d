//! The native per-request decision path of the edge, as a Vary-keyed HIT pays it on the
//! in-memory platform: key derivation through the URL's Vary index (normalized
//! `Accept-Encoding`), the verdicts on the index and the object, freshness and the client's
//! view (`Age`, `Content-Length`); and a Vary-free HIT for comparison. Manifest verification
//! is excluded (it happens once per request whatever the cache does, and is benchmarked in
//! `shared`). Results and the command are in BENCHMARKS.md (target ≤ 2 µs per request).
//!
//! Each case is measured twice: wall-clock time (criterion's default), and the thread's CPU
//! time (`CLOCK_THREAD_CPUTIME_ID`), which does not count the time the thread waited for a
//! core — the figure that stays comparable on a shared, busy machine.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use edgegen_edge::decision::judge_found;
use edgegen_edge::fields::Headers;
use edgegen_edge::memory::MemoryPlatform;
use edgegen_edge::pipeline::{self, Env, Fetched, Platform as _, Request};
use edgegen_edge::settings::Settings;
use edgegen_shared::key::{KeyScope, NormalizedRequest, RequestParts};
use edgegen_shared::{ContractHash, Generation, SchemaVersion, SecretKey, TenantId};

const NOW: u64 = 1_790_000_000_000;

fn request(vary: bool) -> Request {
    let mut headers = Headers::new();
    headers.append("host", b"acme.example.com".to_vec());
    headers.append("accept", b"application/json".to_vec());
    headers.append("accept-encoding", b"gzip, deflate, br".to_vec());
    headers.append("user-agent", b"bench/1.0".to_vec());
    Request {
        method: "GET".into(),
        path: if vary { "/v1/users/8f14e45f/profile".into() } else { "/v1/users/8f14e45f/plain".into() },
        query: Some("include=settings&fields=name,email&lang=en".into()),
        headers,
        body: Vec::new(),
    }
}

fn bench(c: &mut Criterion) {
    let scope = KeyScope {
        tenant: TenantId::new("acme-eu").unwrap(),
        schema_version: SchemaVersion::new("1.8.3").unwrap(),
        contract_hash: ContractHash::from_digest([0x5a; 32]),
        generation: Generation(1042),
    };
    let contract = scope.contract_hash.to_string();
    let origin = move |req: &Request| {
        let mut headers = Headers::new();
        headers.append("content-type", b"application/json".to_vec());
        headers.append("cache-control", b"public, max-age=600".to_vec());
        headers.append("etag", b"\"8f14e45f\"".to_vec());
        if req.path.ends_with("profile") {
            headers.append("vary", b"Accept-Encoding".to_vec());
        }
        headers.append("edgegen-schema", b"1.8.3".to_vec());
        headers.append("edgegen-contract", contract.clone().into_bytes());
        Ok(Fetched { status: 200, headers, body: br#"{"id":"8f14e45f","name":"Ada"}"#.to_vec() })
    };
    let mut p = MemoryPlatform::new(NOW, origin, |_| Err("no coordinator in the benchmark".into()));
    let env = Env {
        settings: Settings::read(|_| None).unwrap(),
        pop: "bench".into(),
        manifest_key: SecretKey::new("m", "bench-key-0123456789abcdef0123456789").unwrap(),
        probe_key: SecretKey::new("p", "bench-key-0123456789abcdef0123456789").unwrap(),
        now_ms: NOW,
    };
    for vary in [true, false] {
        let warm = pipeline::serve_cached(&mut p, &env, &scope, request(vary));
        assert_eq!(warm.response.status, 200);
    }
    let origin_fetches = p.origin_requests.len();
    // The request arrives built (the shell converts it); building it is not timed.
    for (name, vary) in [("edge/hit decision, Vary: Accept-Encoding", true), ("edge/hit decision, no Vary", false)] {
        c.bench_function(name, |b| {
            b.iter_batched(
                || request(vary),
                |req| {
                    let handled = pipeline::serve_cached(&mut p, &env, &scope, black_box(req));
                    assert_eq!(handled.response.status, 200);
                    handled
                },
                BatchSize::SmallInput,
            )
        });
        if thread_cpu_ns().is_some() {
            c.bench_function(&format!("{name} (thread CPU time)"), |b| {
                b.iter_custom(|iters| {
                    let mut spent = 0;
                    let mut left = iters;
                    while left > 0 {
                        let chunk: Vec<Request> = (0..left.min(1000)).map(|_| request(vary)).collect();
                        left -= chunk.len() as u64;
                        let start = thread_cpu_ns().unwrap_or(0);
                        for req in chunk {
                            let handled = pipeline::serve_cached(&mut p, &env, &scope, black_box(req));
                            assert_eq!(handled.response.status, 200);
                            black_box(handled);
                        }
                        spent += thread_cpu_ns().unwrap_or(0).saturating_sub(start);
                    }
                    Duration::from_nanos(spent)
                })
            });
        }
    }
    // The previous edge's whole HIT decision (normalize, one key, judge the stored metadata),
    // 785 ns on a quiet machine on 2026-11-24: measured in the same run, it shows how much the
    // machine's load inflates the figures above.
    let stored = {
        let warm = pipeline::serve_cached(&mut p, &env, &scope, request(false));
        assert_eq!(warm.response.status, 200);
        let key = edgegen_shared::key::CacheKey::derive(
            &scope,
            &NormalizedRequest::new(&RequestParts {
                method: "GET",
                path: "/v1/users/8f14e45f/plain",
                query: Some("include=settings&fields=name,email&lang=en"),
                vary: &[],
            })
            .unwrap(),
        );
        p.lookup(key.as_bytes(), false).unwrap().unwrap().0
    };
    c.bench_function("edge/baseline: normalize + one key + verdict (thread CPU time)", |b| {
        b.iter_custom(|iters| {
            let start = thread_cpu_ns().unwrap_or(0);
            for _ in 0..iters {
                let req = NormalizedRequest::new(&RequestParts {
                    method: "GET",
                    path: black_box("/v1/users/8f14e45f/plain"),
                    query: Some(black_box("include=settings&fields=name,email&lang=en")),
                    vary: &[],
                })
                .unwrap();
                let key = edgegen_shared::key::CacheKey::derive(&scope, &req);
                black_box((key, judge_found(black_box(&stored), &scope)));
            }
            Duration::from_nanos(thread_cpu_ns().unwrap_or(0).saturating_sub(start))
        })
    });
    assert_eq!(p.origin_requests.len(), origin_fetches, "every benchmarked request was a HIT");
}

/// The calling thread's CPU time in ns (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_ns() -> Option<u64> {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Some(u64::try_from(ts.tv_sec).ok()? * 1_000_000_000 + u64::try_from(ts.tv_nsec).ok()?)
}

criterion_group!(benches, bench);
criterion_main!(benches);
