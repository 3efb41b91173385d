//! Native tests of the whole pipeline on the in-memory platform: one test per rule.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use edgegen_shared::lease::{LEASE_HEADER, Lease};
use edgegen_shared::manifest::{MANIFEST_FORMAT, Manifest};
use edgegen_shared::{ContractHash, Generation, SchemaVersion};

use super::*;
use crate::memory::MemoryPlatform;

const NOW: u64 = 1_790_000_000_000;
const KEY: &str = "manifest-key-0123456789abcdef0123456789";

fn contract() -> ContractHash {
    ContractHash::from_digest([2; 32])
}

/// What the scripted origin answers: (status, headers, body) for a request and its number.
type Script = Box<dyn FnMut(&Request, usize) -> Result<Fetched, String>>;

struct H {
    p: MemoryPlatform,
    env: Env,
    clock: Rc<Cell<u64>>,
    generation: Rc<Cell<u64>>,
    script: Rc<RefCell<Script>>,
}

fn fetched(status: u16, headers: &[(&str, &str)], body: &str) -> Fetched {
    let mut h = Headers::new();
    for (n, v) in headers {
        h.append(n, v.as_bytes().to_vec());
    }
    h.append("edgegen-schema", b"1.8.3".to_vec());
    h.append("edgegen-contract", contract().to_string().into_bytes());
    Fetched { status, headers: h, body: body.as_bytes().to_vec() }
}

fn h_with(settings: &[(&str, &str)], script: impl FnMut(&Request, usize) -> Result<Fetched, String> + 'static) -> H {
    let clock = Rc::new(Cell::new(NOW));
    let generation = Rc::new(Cell::new(7));
    let script: Rc<RefCell<Script>> = Rc::new(RefCell::new(Box::new(script)));
    let (c, g) = (clock.clone(), generation.clone());
    let coordinator = move |path: &str| {
        assert_eq!(path, "/v1/edge/manifests/acme");
        let m = Manifest {
            format: MANIFEST_FORMAT,
            tenant: TenantId::new("acme").unwrap(),
            generation: Generation(g.get()),
            schema_version: SchemaVersion::new("1.8.3").unwrap(),
            contract_hash: contract(),
            release_id: None,
            issued_at: c.get(),
            max_age_ms: 1000,
            max_stale_ms: None,
        };
        Ok(Fetched {
            status: 200,
            headers: Headers::new(),
            body: m.sign(&SecretKey::new("m", KEY).unwrap()).into_bytes(),
        })
    };
    let s = script.clone();
    let counter = Rc::new(Cell::new(0));
    let origin = move |req: &Request| {
        counter.set(counter.get() + 1);
        (s.borrow_mut())(req, counter.get())
    };
    let mut p = MemoryPlatform::new(NOW, origin, coordinator);
    p.hosts.insert("a.test".into(), "acme".into());
    let owned: Vec<(String, String)> = settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let settings = Settings::read(|k| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())).unwrap();
    let env = Env {
        settings,
        pop: "pop-1".into(),
        manifest_key: SecretKey::new("m", KEY).unwrap(),
        probe_key: SecretKey::new("p", KEY).unwrap(),
        now_ms: NOW,
    };
    H { p, env, clock, generation, script }
}

fn h(script: impl FnMut(&Request, usize) -> Result<Fetched, String> + 'static) -> H {
    h_with(&[], script)
}

fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Request {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let mut h = Headers::new();
    h.append("host", b"a.test".to_vec());
    for (n, v) in headers {
        h.append(n, v.as_bytes().to_vec());
    }
    Request { method: method.into(), path, query, headers: h, body: Vec::new() }
}

struct Seen {
    status: u16,
    headers: Headers,
    body: String,
    deferred: Vec<Deferred>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

impl H {
    fn send(&mut self, req: Request) -> Seen {
        let handled = handle(&mut self.p, &self.env, req);
        let body = match handled.response.body {
            Body::Bytes(b) => String::from_utf8(b).unwrap(),
            Body::Stored(b) => String::from_utf8(b.to_vec()).unwrap(),
        };
        Seen { status: handled.response.status, headers: handled.response.headers, body, deferred: handled.deferred }
    }

    fn get(&mut self, target: &str, headers: &[(&str, &str)]) -> Seen {
        self.send(request("GET", target, headers))
    }

    fn advance(&mut self, secs: u64) {
        self.advance_ms(secs * 1000);
    }

    fn advance_ms(&mut self, ms: u64) {
        self.clock.set(self.clock.get() + ms);
        self.p.now_ms = self.clock.get();
        self.env.now_ms = self.clock.get();
    }

    fn origin_hits(&self) -> usize {
        self.p.origin_requests.len()
    }

    fn run_deferred(&mut self, deferred: Vec<Deferred>) {
        for d in deferred {
            run_deferred(&mut self.p, &self.env, d);
        }
    }

    fn reports(&self) -> usize {
        self.p.posts.iter().filter(|(p, _)| p == "/v1/edge/reports").count()
    }
}

fn ok(cc: &str) -> impl FnMut(&Request, usize) -> Result<Fetched, String> {
    let cc = cc.to_owned();
    move |_, n| Ok(fetched(200, &[("cache-control", &cc), ("surrogate-key", "users")], &format!("body {n}")))
}

#[test]
fn miss_then_hit_with_content_length_and_no_surrogate_headers() {
    let mut h = h(|_, n| {
        Ok(fetched(
            200,
            &[("cache-control", "max-age=60"), ("surrogate-key", "k"), ("surrogate-control", "max-age=90")],
            &format!("n{n}"),
        ))
    });
    let first = h.get("/a", &[]);
    let second = h.get("/a", &[]);
    assert_eq!((first.body.as_str(), second.body.as_str()), ("n1", "n1"));
    assert_eq!(second.header("content-length"), Some("2"));
    for seen in [&first, &second] {
        assert!(!seen.headers.contains("surrogate-key") && !seen.headers.contains("surrogate-control"));
    }
    assert_eq!(h.origin_hits(), 1);
    // Surrogate-Control's 90 s governs the edge, not Cache-Control's 60 s.
    h.advance(75);
    assert_eq!(h.get("/a", &[]).body, "n1");
    assert_eq!(h.origin_hits(), 1);
}

#[test]
fn a_private_or_no_store_on_a_later_line_is_never_stored() {
    for second in ["private", "no-store", "no-cache"] {
        let second = second.to_owned();
        let mut h = h(move |_, n| {
            Ok(fetched(200, &[("cache-control", "max-age=3600"), ("cache-control", &second)], &format!("n{n}")))
        });
        h.get("/me", &[("x-user", "alice")]);
        assert_eq!(h.get("/me", &[]).body, "n2");
        assert_eq!(h.origin_hits(), 2);
    }
}

#[test]
fn qualified_no_cache_and_private_store_without_the_named_fields() {
    let mut h = h(|_, n| {
        let cc = "max-age=60, no-cache=\"x-a\", private=\"X-B\"";
        Ok(fetched(200, &[("cache-control", cc), ("x-a", "1"), ("x-b", "2"), ("x-c", "3")], &format!("{n}")))
    });
    let miss = h.get("/q", &[]);
    assert!(miss.headers.contains("x-a"), "the response itself is forwarded whole");
    let hit = h.get("/q", &[]);
    assert_eq!(hit.body, "1");
    assert!(!hit.headers.contains("x-a") && !hit.headers.contains("x-b") && hit.headers.contains("x-c"));
}

#[test]
fn age_counts_the_origins_age_and_residence() {
    let mut h = h(|_, _| Ok(fetched(200, &[("cache-control", "max-age=100"), ("age", "50")], "x")));
    let miss = h.get("/aged", &[]);
    assert_eq!(miss.header("age"), Some("50"), "a MISS forwards the origin's Age");
    h.advance(10);
    assert_eq!(h.get("/aged", &[]).header("age"), Some("60"));
    h.advance(45);
    let after = h.get("/aged", &[]);
    assert_eq!(h.origin_hits(), 2, "stale after 100 - 50 s: {:?}", after.header("age"));
}

#[test]
fn vary_variants_share_normalized_accept_encoding_and_read_every_vary_line() {
    let mut h = h(|req, n| {
        let enc = req.headers.combined("accept-encoding").unwrap_or_default().into_owned();
        Ok(fetched(
            200,
            &[("cache-control", "max-age=60"), ("vary", "Accept-Encoding"), ("vary", "X-Lang")],
            &format!("{enc}|{n}"),
        ))
    });
    let gzip_en = h.get("/v", &[("accept-encoding", "gzip, br"), ("x-lang", "en")]);
    assert_eq!(h.get("/v", &[("accept-encoding", "br,gzip"), ("x-lang", "en")]).body, gzip_en.body, "same coding set");
    assert_eq!(
        h.get("/v", &[("accept-encoding", "br"), ("accept-encoding", "gzip;q=0.5, deflate;q=0"), ("x-lang", "en")])
            .body,
        gzip_en.body
    );
    let fr = h.get("/v", &[("accept-encoding", "gzip, br"), ("x-lang", "fr")]);
    assert_ne!(fr.body, gzip_en.body, "the second Vary line selects too");
    let none = h.get("/v", &[]);
    assert_ne!(none.body, gzip_en.body);
    assert_eq!(h.origin_hits(), 3);
    assert_eq!(h.get("/v", &[("accept-encoding", "gzip, br"), ("x-lang", "fr")]).body, fr.body);
    assert_eq!(h.origin_hits(), 3);
}

#[test]
fn accept_language_case_does_not_split_variants_but_order_does() {
    let mut h =
        h(|_, n| Ok(fetched(200, &[("cache-control", "max-age=60"), ("vary", "accept-language")], &format!("{n}"))));
    h.get("/l", &[("accept-language", "en, de")]);
    assert_eq!(h.get("/l", &[("accept-language", "eN,  De")]).body, "1");
    assert_eq!(h.get("/l", &[("accept-language", "de, en")]).body, "2", "a different preference");
}

#[test]
fn vary_star_is_never_stored_and_variants_are_capped() {
    let mut h = h(|_, n| Ok(fetched(200, &[("cache-control", "max-age=60"), ("vary", "*")], &format!("{n}"))));
    h.get("/star", &[]);
    h.get("/star", &[]);
    assert_eq!(h.origin_hits(), 2);

    let mut h =
        h_with(&[], |_, n| Ok(fetched(200, &[("cache-control", "max-age=60"), ("vary", "x-v")], &format!("{n}"))));
    for i in 0..MAX_VARIANTS + 4 {
        h.get("/many", &[("x-v", &i.to_string())]);
    }
    let before = h.origin_hits();
    h.get("/many", &[("x-v", &(MAX_VARIANTS + 3).to_string())]);
    h.get("/many", &[("x-v", "4")]);
    assert_eq!(h.origin_hits(), before, "the newest variants are stored");
    h.get("/many", &[("x-v", "0")]);
    assert_eq!(h.origin_hits(), before + 1, "the oldest made room (capped)");
}

#[test]
fn expires_with_date_gives_the_lifetime() {
    let date = format_http_date(NOW / 1000);
    let expires = format_http_date(NOW / 1000 + 30);
    let mut h = h(move |_, n| Ok(fetched(200, &[("date", &date), ("expires", &expires)], &format!("{n}"))));
    h.get("/e", &[]);
    h.advance(20);
    assert_eq!(h.get("/e", &[]).body, "1");
    h.advance(15);
    assert_eq!(h.get("/e", &[]).body, "2");
}

#[test]
fn stale_objects_are_revalidated_and_a_304_refreshes_the_head() {
    let mut h = h(|req, _| {
        if req.headers.get("if-none-match") == Some("\"v1\"") {
            Ok(fetched(304, &[("cache-control", "max-age=100"), ("etag", "\"v1\""), ("x-new", "yes")], ""))
        } else {
            Ok(fetched(200, &[("cache-control", "max-age=10"), ("etag", "\"v1\""), ("x-new", "no")], "the body"))
        }
    });
    h.get("/r", &[]);
    h.advance(20);
    let revalidated = h.get("/r", &[]);
    assert_eq!((revalidated.status, revalidated.body.as_str()), (200, "the body"));
    assert_eq!(revalidated.header("x-new"), Some("yes"), "the 304's fields replace the stored ones");
    assert_eq!(h.p.origin_requests[1].headers.get("if-none-match"), Some("\"v1\""));
    assert!(h.p.origin_requests[1].body.is_empty());
    h.advance(50);
    assert_eq!(h.get("/r", &[]).body, "the body");
    assert_eq!(h.origin_hits(), 2, "the 304 renewed the lifetime to 100 s");
}

#[test]
fn client_conditionals_get_304_from_the_edge() {
    let lm = format_http_date(NOW / 1000 - 100);
    let mut h = h(move |_, _| {
        Ok(fetched(200, &[("cache-control", "max-age=60"), ("etag", "W/\"e\""), ("last-modified", &lm)], "b"))
    });
    h.get("/c", &[]);
    let inm = h.get("/c", &[("if-none-match", "\"x\", \"e\"")]);
    assert_eq!((inm.status, inm.body.as_str()), (304, ""));
    assert_eq!(inm.header("etag"), Some("W/\"e\""));
    assert_eq!(h.get("/c", &[("if-none-match", "\"other\"")]).status, 200);
    let ims = format_http_date(NOW / 1000);
    assert_eq!(h.get("/c", &[("if-modified-since", &ims)]).status, 304);
    let earlier = format_http_date(NOW / 1000 - 1000);
    assert_eq!(h.get("/c", &[("if-modified-since", &earlier)]).status, 200);
    assert_eq!(h.origin_hits(), 1);
    assert!(h.p.origin_requests[0].headers.get("if-none-match").is_none());
}

#[test]
fn head_and_range_are_answered_from_the_stored_get() {
    let mut h = h(|_, _| Ok(fetched(200, &[("cache-control", "max-age=60"), ("etag", "\"s\"")], "0123456789")));
    h.get("/r", &[]);
    let head = h.send(request("HEAD", "/r", &[]));
    assert_eq!((head.status, head.body.as_str(), head.header("content-length")), (200, "", Some("10")));
    let cases = [
        ("bytes=2-4", 206, "234", Some("bytes 2-4/10")),
        ("bytes=-3", 206, "789", Some("bytes 7-9/10")),
        ("bytes=8-", 206, "89", Some("bytes 8-9/10")),
        ("bytes=20-", 416, "", Some("bytes */10")),
        ("bytes=1-2,4-5", 200, "0123456789", None),
        ("items=1-2", 200, "0123456789", None),
    ];
    for (range, status, body, content_range) in cases {
        let seen = h.get("/r", &[("range", range)]);
        assert_eq!(
            (seen.status, seen.body.as_str(), seen.header("content-range")),
            (status, body, content_range),
            "{range}"
        );
    }
    assert_eq!(h.get("/r", &[("range", "bytes=0-1"), ("if-range", "\"other\"")]).status, 200);
    assert_eq!(h.get("/r", &[("range", "bytes=0-1"), ("if-range", "\"s\"")]).status, 206);
    assert_eq!(h.origin_hits(), 1);
    assert!(h.p.origin_requests[0].headers.get("range").is_none(), "the edge fetches whole objects");
}

#[test]
fn stale_while_revalidate_serves_then_refreshes_after_the_response() {
    let mut h =
        h(|_, n| Ok(fetched(200, &[("cache-control", "max-age=1, stale-while-revalidate=30")], &format!("v{n}"))));
    h.get("/s", &[]);
    h.advance(5);
    let stale = h.get("/s", &[]);
    assert_eq!(stale.body, "v1");
    assert_eq!(h.origin_hits(), 1, "nothing fetched before the response");
    assert_eq!(stale.deferred.len(), 1);
    h.run_deferred(stale.deferred);
    assert_eq!(h.origin_hits(), 2);
    assert_eq!(h.get("/s", &[]).body, "v2");
    h.advance(60);
    let too_old = h.get("/s", &[]);
    assert_eq!((too_old.body.as_str(), too_old.deferred.len()), ("v3", 0), "never past the window");
}

#[test]
fn stale_if_error_on_5xx_and_unreachable_origin_within_its_window_only() {
    let mut h = h(|_, _| Ok(fetched(200, &[("cache-control", "max-age=1, stale-if-error=30")], "good")));
    h.get("/e", &[]);
    h.advance(5);
    *h.script.borrow_mut() = Box::new(|_, _| Ok(fetched(503, &[], "down")));
    assert_eq!(h.get("/e", &[]).body, "good");
    *h.script.borrow_mut() = Box::new(|_, _| Err("connection refused".into()));
    assert_eq!(h.get("/e", &[]).body, "good");
    h.advance(40);
    assert_eq!(h.get("/e", &[]).status, 502);
    *h.script.borrow_mut() = Box::new(|_, _| Ok(fetched(503, &[], "down")));
    assert_eq!(h.get("/e", &[]).status, 503);
}

#[test]
fn revalidation_directives_forbid_stale_serving() {
    for cc in [
        "max-age=1, stale-if-error=60, must-revalidate",
        "max-age=1, stale-if-error=60, proxy-revalidate",
        "no-cache, stale-if-error=60",
        "s-maxage=1, stale-if-error=60",
    ] {
        let cc = cc.to_owned();
        let mut h = h(move |_, _| Ok(fetched(200, &[("cache-control", &cc), ("etag", "\"x\"")], "good")));
        h.get("/m", &[]);
        h.advance(5);
        *h.script.borrow_mut() = Box::new(|_, _| Ok(fetched(503, &[], "down")));
        assert_eq!(h.get("/m", &[]).status, 503);
    }
}

#[test]
fn stale_serving_never_crosses_generations() {
    let mut h = h(|_, n| {
        Ok(fetched(
            200,
            &[("cache-control", "max-age=1, stale-while-revalidate=60, stale-if-error=60")],
            &format!("g7-{n}"),
        ))
    });
    h.get("/g", &[]);
    h.generation.set(8);
    h.advance(3);
    *h.script.borrow_mut() = Box::new(|_, _| Ok(fetched(503, &[], "down")));
    let seen = h.get("/g", &[]);
    assert_eq!(
        (seen.status, seen.deferred.len()),
        (503, 0),
        "generation 7's object is not generation 8's stale object"
    );
    *h.script.borrow_mut() = Box::new(|_, _| Err("refused".into()));
    assert_eq!(h.get("/g", &[]).status, 502);
}

#[test]
fn an_object_of_another_scope_is_never_served_by_any_path() {
    // Plant generation 6's object (with generous stale windows) where generation 7 looks.
    let mut h = h(|_, n| Ok(fetched(200, &[("cache-control", "max-age=60")], &format!("fresh{n}"))));
    let scope = KeyScope {
        tenant: TenantId::new("acme").unwrap(),
        schema_version: SchemaVersion::new("1.8.3").unwrap(),
        contract_hash: contract(),
        generation: Generation(6),
    };
    let target = Target::at("/p", None).unwrap();
    let current = KeyScope { generation: Generation(7), ..scope.clone() };
    let key = CacheKey::derive(&current, &target.primary);
    let timing = Timing {
        response_time_ms: NOW,
        initial_age: 0,
        lifetime: 600,
        stale_while_revalidate: 600,
        stale_if_error: 600,
        no_cache: false,
        must_revalidate: false,
    };
    let head = StoredHead {
        metadata: ObjectMetadata::new(&scope, NOW),
        status: 200,
        body_len: 7,
        timing,
        headers: Headers::new(),
    };
    let planted = Record::Object(head).encode();
    for script in [0, 1, 2] {
        h.p.insert(key.as_bytes(), &planted, b"planted", 600, &[]).unwrap();
        *h.script.borrow_mut() = match script {
            0 => Box::new(|_, _| Ok(fetched(200, &[("cache-control", "max-age=60")], "fresh"))),
            1 => Box::new(|_, _| Ok(fetched(503, &[], "down"))),
            _ => Box::new(|_, _| Err("refused".into())),
        };
        for extra in [
            &[][..],
            &[("cache-control", "max-stale")][..],
            &[("cache-control", "only-if-cached")][..],
            &[("range", "bytes=0-2")][..],
        ] {
            let seen = h.get("/p", extra);
            assert!(!seen.body.contains("planted"), "script {script} {extra:?}: {}", seen.body);
            h.p.insert(key.as_bytes(), &planted, b"planted", 600, &[]).unwrap();
        }
        let head = h.send(request("HEAD", "/p", &[]));
        assert_ne!(head.header("content-length"), Some("7"));
    }
}

#[test]
fn unsafe_methods_invalidate_the_target_and_same_origin_locations() {
    let mut h = h(|req, n| {
        if req.method == "POST" {
            Ok(fetched(201, &[("location", "/b"), ("content-location", "http://a.test/c?x=1")], "created"))
        } else {
            Ok(fetched(200, &[("cache-control", "max-age=600")], &format!("{n}")))
        }
    });
    for t in ["/a", "/b", "/c?x=1", "/d"] {
        h.get(t, &[]);
    }
    assert_eq!(h.origin_hits(), 4);
    let mut post = request("POST", "/a", &[]);
    post.body = b"payload".to_vec();
    assert_eq!(h.send(post).status, 201);
    assert_eq!(h.p.origin_requests[4].body, b"payload");
    for t in ["/a", "/b", "/c?x=1", "/d"] {
        h.get(t, &[]);
    }
    assert_eq!(h.origin_hits(), 8, "/a, /b and /c refetched; /d still cached");
    // An error answer invalidates nothing; a foreign Location is ignored.
    *h.script.borrow_mut() = Box::new(|_, _| Ok(fetched(500, &[("location", "http://evil.test/d")], "")));
    h.send(request("DELETE", "/d", &[]));
    h.get("/d", &[]);
    assert_eq!(h.origin_hits(), 9);
}

#[test]
fn fat_gets_and_unkeyed_headers_never_reach_the_origin() {
    let mut h = h(ok("max-age=60"));
    let mut fat = request(
        "GET",
        "/f",
        &[
            ("content-length", "4"),
            ("x_forwarded_host", "evil"),
            ("X-Forwarded-Ssl", "on"),
            ("front-end-https", "on"),
            ("x-forwarded-uri", "/admin"),
            ("X_HTTP_Method_Override", "DELETE"),
            ("connection", "x-drop"),
            ("x-drop", "1"),
            ("keep-alive", "1"),
            ("accept", "application/json"),
        ],
    );
    fat.body = b"evil".to_vec();
    h.send(fat);
    let sent = &h.p.origin_requests[0];
    assert!(sent.body.is_empty());
    let names: Vec<&str> = sent.headers.iter().map(|(n, _)| n).collect();
    for gone in [
        "content-length",
        "x_forwarded_host",
        "x-forwarded-ssl",
        "front-end-https",
        "x-forwarded-uri",
        "x_http_method_override",
        "connection",
        "x-drop",
        "keep-alive",
    ] {
        assert!(!names.contains(&gone), "{gone} reached the origin: {names:?}");
    }
    assert!(names.contains(&"accept"));
}

#[test]
fn duplicate_host_is_refused() {
    let mut h = h(ok("max-age=60"));
    let seen = h.get("/x", &[("host", "b.test")]);
    assert_eq!(seen.status, 400);
    assert!(seen.body.contains("duplicate_host"));
    assert_eq!(h.origin_hits(), 0);
}

#[test]
fn connection_nominated_response_headers_are_neither_stored_nor_forwarded() {
    let mut h = h(|_, _| {
        Ok(fetched(
            200,
            &[("cache-control", "max-age=60"), ("connection", "x-hop"), ("x-hop", "1"), ("keep-alive", "t=1")],
            "b",
        ))
    });
    for _ in 0..2 {
        let seen = h.get("/hop", &[]);
        assert!(
            !seen.headers.contains("x-hop")
                && !seen.headers.contains("keep-alive")
                && !seen.headers.contains("connection")
        );
    }
}

#[test]
fn a_report_the_coordinator_did_not_accept_is_sent_again_after_the_retry_delay() {
    let mut h = h(|_, _| {
        let mut f = fetched(200, &[("cache-control", "max-age=60")], "x");
        f.headers.set("edgegen-schema", b"1.8.2".to_vec());
        Ok(f)
    });
    h.p.accept_posts = false;
    for path in ["/a", "/b", "/c"] {
        h.get(path, &[]);
    }
    assert_eq!(h.reports(), 1, "a burst of mismatches sends one report");
    h.advance(crate::pipeline::REPORT_RETRY_SECS + 1);
    h.get("/d", &[]);
    assert_eq!(h.reports(), 2, "the lost report is sent again");
    h.p.accept_posts = true;
    h.advance(crate::pipeline::REPORT_RETRY_SECS + 1);
    h.get("/e", &[]);
    assert_eq!(h.reports(), 3);
    h.advance(crate::pipeline::REPORT_RETRY_SECS + 1);
    h.get("/f", &[]);
    assert_eq!(h.reports(), 3, "once accepted, not again within the report window");
}

#[test]
fn reports_only_for_storable_mismatches_once_per_window() {
    let mut h = h(|req, _| {
        let mut f =
            fetched(if req.path == "/no-such-page" { 404 } else { 200 }, &[("cache-control", "max-age=60")], "x");
        f.headers.set("edgegen-schema", b"1.8.2".to_vec());
        if req.path == "/no-such-page" {
            f.headers = Headers::new();
        }
        Ok(f)
    });
    for _ in 0..5 {
        h.get("/no-such-page", &[]);
    }
    assert_eq!(h.reports(), 0, "an unstamped, unstorable default 404 is no evidence");
    for path in ["/a", "/b", "/a"] {
        h.get(path, &[]);
    }
    assert_eq!(h.reports(), 1, "once per (tenant, generation, kind) per window");
    h.advance(301);
    h.get("/a", &[]);
    assert_eq!(h.reports(), 2);
    h.generation.set(8);
    h.advance(2);
    h.get("/a", &[]);
    assert_eq!(h.reports(), 3, "a new generation reports again");
}

#[test]
fn credentials_are_stored_only_as_section_3_5_allows() {
    let settings = [("credentials_tenants", "acme")];
    let mut h = h_with(&settings, ok("max-age=60"));
    h.get("/auth", &[("authorization", "Bearer alice")]);
    assert_eq!(h.get("/auth", &[]).body, "body 2", "an authenticated answer is not served to anyone else");
    let mut cookie = h_with(&settings, ok("max-age=60"));
    cookie.get("/auth", &[("cookie", "session=alice")]);
    assert_eq!(cookie.get("/auth", &[]).body, "body 2", "nor is a cookie-selected one");
    let mut public = h_with(&settings, ok("public, max-age=60"));
    public.get("/auth", &[("authorization", "Bearer alice")]);
    assert_eq!(public.get("/auth", &[]).body, "body 1");
    let mut default = h_with(&[], ok("public, max-age=60"));
    default.get("/auth", &[("authorization", "Bearer alice")]);
    default.get("/auth", &[("authorization", "Bearer alice")]);
    assert_eq!(default.origin_hits(), 2, "without the setting credentialed requests pass");
}

#[test]
fn client_directives_follow_the_setting_and_only_if_cached_always() {
    let mut honour = h_with(&[("honour_request_directives_tenants", "acme")], ok("max-age=60"));
    honour.get("/d", &[]);
    assert_eq!(honour.get("/d", &[("cache-control", "no-cache")]).body, "body 2");
    assert_eq!(honour.get("/d", &[("pragma", "no-cache")]).body, "body 3");
    honour.advance(10);
    assert_eq!(honour.get("/d", &[("cache-control", "max-age=5")]).body, "body 4");
    assert_eq!(honour.get("/d", &[("cache-control", "min-fresh=61")]).body, "body 5");
    assert_eq!(honour.get("/nothing", &[("cache-control", "only-if-cached")]).status, 504);

    let mut ignore = h(ok("max-age=60"));
    ignore.get("/d", &[]);
    assert_eq!(ignore.get("/d", &[("cache-control", "no-cache")]).body, "body 1", "ignored by default");
    assert_eq!(ignore.get("/d", &[("pragma", "no-cache"), ("cache-control", "max-age=0")]).body, "body 1");
    assert_eq!(ignore.get("/nothing", &[("cache-control", "only-if-cached")]).status, 504);
}

#[test]
fn which_statuses_are_stored() {
    for (status, stored) in
        [(200, true), (204, true), (301, true), (404, true), (410, true), (503, true), (206, false), (302, true)]
    {
        let mut h = h(move |_, n| Ok(fetched(status, &[("cache-control", "max-age=60")], &format!("{n}"))));
        h.get("/s", &[]);
        h.get("/s", &[]);
        assert_eq!(h.origin_hits() == 1, stored, "{status}");
    }
}

#[test]
fn manifests_are_trusted_while_fresh_and_acknowledged_once_per_generation() {
    let mut h = h(ok("max-age=60"));
    h.get("/a", &[]);
    h.get("/a", &[]);
    let acks = |h: &H| h.p.posts.iter().filter(|(p, _)| p == "/v1/edge/acks").count();
    assert_eq!(acks(&h), 1);
    h.advance(2);
    h.get("/a", &[]);
    assert_eq!(acks(&h), 1, "a re-fetched unchanged generation is not acknowledged again");
    h.generation.set(8);
    h.advance(2);
    h.get("/a", &[]);
    assert_eq!(acks(&h), 2);
    // Every manifest request names this PoP: the coordinator accepts its acks only then.
    assert!(!h.p.coordinator_headers.is_empty());
    for headers in &h.p.coordinator_headers {
        assert_eq!(headers[0], ("edgegen-pop".to_owned(), h.env.pop.clone()));
    }
}

#[test]
fn an_ack_the_coordinator_did_not_accept_is_sent_again_at_the_next_refresh() {
    let mut h = h(ok("max-age=60"));
    let acks = |h: &H| h.p.posts.iter().filter(|(p, _)| p == "/v1/edge/acks").count();
    h.p.accept_posts = false;
    h.get("/a", &[]);
    assert_eq!(acks(&h), 1);
    h.get("/a", &[]);
    assert_eq!(acks(&h), 1, "within the manifest's max age nothing is asked, nothing re-sent");
    h.advance(2);
    h.get("/a", &[]);
    assert_eq!(acks(&h), 2, "the lost ack is sent again when the manifest is refreshed");
    h.p.accept_posts = true;
    h.advance(2);
    h.get("/a", &[]);
    assert_eq!(acks(&h), 3);
    h.advance(2);
    h.get("/a", &[]);
    assert_eq!(acks(&h), 3, "once accepted, the generation is not acknowledged again");
}

/// How the scripted coordinator of the lease tests behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coordinator {
    /// Answers 200, or 304 with a fresh lease when the held generation is current.
    Up,
    /// Cannot be reached.
    Down,
    /// Answers 503.
    Failing,
    /// Answers 304 with a valid lease issued for another tenant.
    ForeignLease,
    /// Answers 304 with a lease replayed from a minute ago.
    ReplayedLease,
    /// Answers 304 without a lease.
    NoLease,
}

/// Replaces the harness's coordinator with one whose manifests carry a 300 s stale bound and
/// which answers conditional requests with leases, as `mode` says.
fn leasing(h: &mut H) -> Rc<Cell<Coordinator>> {
    let mode = Rc::new(Cell::new(Coordinator::Up));
    let (clock, generation, m) = (h.clock.clone(), h.generation.clone(), mode.clone());
    h.p.set_coordinator(move |path, headers| {
        let key = SecretKey::new("m", KEY).unwrap();
        let manifest = |tenant: &str, issued_at: u64| Manifest {
            format: MANIFEST_FORMAT,
            tenant: TenantId::new(tenant).unwrap(),
            generation: Generation(generation.get()),
            schema_version: SchemaVersion::new("1.8.3").unwrap(),
            contract_hash: contract(),
            release_id: None,
            issued_at,
            max_age_ms: 1000,
            max_stale_ms: Some(300_000),
        };
        assert_eq!(path, "/v1/edge/manifests/acme");
        let now = clock.get();
        let lease = match m.get() {
            Coordinator::Down => return Err("connection refused".into()),
            Coordinator::Failing => return Ok(Fetched { status: 503, headers: Headers::new(), body: Vec::new() }),
            Coordinator::Up => Lease::new(&manifest("acme", now), now, 1000, 300_000),
            Coordinator::ForeignLease => Lease::new(&manifest("beta", now), now, 1000, 300_000),
            Coordinator::ReplayedLease | Coordinator::NoLease => {
                Lease::new(&manifest("acme", now), now - 60_000, 1000, 300_000)
            }
        };
        let etag = format!("\"{}\"", generation.get());
        if headers.iter().any(|(n, v)| *n == "if-none-match" && *v == etag) {
            let mut h = Headers::new();
            if m.get() != Coordinator::NoLease {
                h.append(LEASE_HEADER, lease.sign(&key).into_bytes());
            }
            return Ok(Fetched { status: 304, headers: h, body: Vec::new() });
        }
        Ok(Fetched { status: 200, headers: Headers::new(), body: manifest("acme", now).sign(&key).into_bytes() })
    });
    mode
}

fn conditional(h: &H, n: usize) -> Option<String> {
    h.p.coordinator_headers[n].iter().find(|(name, _)| name == "if-none-match").map(|(_, v)| v.clone())
}

#[test]
fn a_stale_manifest_is_revalidated_and_a_304_lease_extends_it() {
    let mut h = h(ok("max-age=600"));
    leasing(&mut h);
    assert_eq!(h.get("/a", &[]).body, "body 1");
    assert_eq!(conditional(&h, 0), None, "nothing held: unconditional");
    h.advance(2);
    assert_eq!(h.get("/a", &[]).body, "body 1", "HIT: same generation");
    assert_eq!(h.p.coordinator_headers.len(), 2);
    assert_eq!(conditional(&h, 1).as_deref(), Some("\"7\""), "past max age: revalidated with the generation");
    h.get("/a", &[]);
    assert_eq!(h.p.coordinator_headers.len(), 2, "the lease made the held manifest fresh again");
    assert_eq!(h.p.posts.iter().filter(|(p, _)| p == "/v1/edge/acks").count(), 1);
    assert!(!h.p.logs.iter().any(|l| l.contains("refused")), "{:?}", h.p.logs);
    // A new generation gets the full manifest, and a new scope.
    h.generation.set(8);
    h.advance(2);
    assert_eq!(h.get("/a", &[]).body, "body 2");
    assert_eq!(h.origin_hits(), 2);
}

#[test]
fn a_replayed_or_other_tenant_lease_is_refused_and_the_manifest_fetched_in_full() {
    for bad in [Coordinator::ForeignLease, Coordinator::ReplayedLease, Coordinator::NoLease] {
        let mut h = h(ok("max-age=600"));
        let mode = leasing(&mut h);
        h.get("/a", &[]);
        mode.set(bad);
        h.advance(2);
        assert_eq!(h.get("/a", &[]).body, "body 1", "{bad:?}");
        assert_eq!(h.p.coordinator_headers.len(), 3, "{bad:?}: conditional, refused, then in full");
        assert_eq!(conditional(&h, 2), None, "{bad:?}");
        let refused = match bad {
            Coordinator::ForeignLease => "another tenant",
            Coordinator::ReplayedLease => "no longer current",
            _ => "without a lease",
        };
        assert!(h.p.logs.iter().any(|l| l.contains("refused") && l.contains(refused)), "{bad:?}: {:?}", h.p.logs);
    }
}

#[test]
fn an_unreachable_coordinator_keeps_the_last_verified_manifest_until_its_stale_bound() {
    for (down, unavailable) in [(Coordinator::Down, false), (Coordinator::Failing, false), (Coordinator::Down, true)] {
        let settings: &[(&str, &str)] = if unavailable { &[("no_manifest", "unavailable")] } else { &[] };
        let mut h = h_with(settings, ok("max-age=600"));
        let mode = leasing(&mut h);
        h.get("/a", &[]);
        mode.set(down);
        // Manifest issued at NOW with a 300 s stale bound: still used at NOW + 299 s.
        for _ in 0..3 {
            h.advance(99);
            let seen = h.get("/a", &[]);
            assert_eq!((seen.status, seen.body.as_str(), h.origin_hits()), (200, "body 1", 1), "{down:?}: HIT");
        }
        assert!(h.p.logs.iter().any(|l| l.contains("keeping generation 7")), "{:?}", h.p.logs);
        h.advance(3);
        let seen = h.get("/a", &[]);
        if unavailable {
            assert_eq!((seen.status, h.origin_hits()), (503, 1), "{down:?}: past max_stale, 503");
        } else {
            assert_eq!((seen.status, seen.body.as_str(), h.origin_hits()), (200, "body 2", 2), "{down:?}: BYPASS");
        }
        // The coordinator back (the expired entry is gone): fetched in full, the cache is used
        // again under the same generation.
        mode.set(Coordinator::Up);
        h.get("/a", &[]);
        let hits = h.origin_hits();
        assert_eq!(h.get("/a", &[]).body, "body 1", "cached again under the same generation");
        assert_eq!(h.origin_hits(), hits);
    }
}

#[test]
fn a_failure_is_remembered_so_the_pop_does_not_ask_again_before_its_backoff() {
    for down in [Coordinator::Down, Coordinator::Failing] {
        let mut h = h(ok("max-age=600"));
        let mode = leasing(&mut h);
        h.get("/a", &[]);
        let asked = |h: &H| h.p.coordinator_headers.len();
        assert_eq!(asked(&h), 1);
        mode.set(down);
        h.advance(2);
        h.get("/a", &[]);
        assert_eq!(asked(&h), 2, "{down:?}: past max age, the first request asks");
        for _ in 0..9 {
            h.advance_ms(100);
            assert_eq!(h.get("/a", &[]).body, "body 1");
        }
        assert_eq!(asked(&h), 2, "{down:?}: for one max age (1 s) after the failure nobody asks");
        h.advance_ms(100);
        h.get("/a", &[]);
        assert_eq!(asked(&h), 3, "{down:?}: one max age later, one request asks again");
        // The coordinator back: the PoP learns it within one max age, and then re-checks at
        // every max age again.
        mode.set(Coordinator::Up);
        h.advance_ms(900);
        h.get("/a", &[]);
        assert_eq!(asked(&h), 3, "{down:?}: still quiet");
        h.advance_ms(100);
        h.get("/a", &[]);
        assert_eq!(asked(&h), 4, "{down:?}");
        h.advance(2);
        h.get("/a", &[]);
        assert_eq!(asked(&h), 5, "{down:?}: a confirmation clears the backoff");
        assert_eq!(h.origin_hits(), 1, "{down:?}: every request was a HIT");
    }
}

#[test]
fn a_purge_of_the_manifest_ends_the_backoff() {
    let mut h = h(ok("max-age=600"));
    let mode = leasing(&mut h);
    h.get("/a", &[]);
    mode.set(Coordinator::Down);
    h.advance(2);
    h.get("/a", &[]);
    assert_eq!(h.p.coordinator_headers.len(), 2);
    // The backoff lives in the manifest's entry: the push purge of `edgegen-manifest/acme`
    // removes it with the manifest, and the next request asks at once.
    mode.set(Coordinator::Up);
    h.generation.set(8);
    h.p.evict(b"edgegen/manifest/acme");
    h.advance_ms(100);
    assert_eq!(h.get("/a", &[]).body, "body 2", "the new generation, without waiting for the backoff");
    assert_eq!(h.p.coordinator_headers.len(), 3);
}

#[test]
fn a_lease_moves_the_stale_bound_forward() {
    let mut h = h(ok("max-age=6000"));
    let mode = leasing(&mut h);
    h.get("/a", &[]);
    h.advance(200);
    h.get("/a", &[]); // revalidated: a lease issued at NOW + 200 s
    mode.set(Coordinator::Down);
    h.advance(299);
    assert_eq!(
        (h.get("/a", &[]).body.as_str(), h.origin_hits()),
        ("body 1", 1),
        "NOW + 499 s: within the lease's bound"
    );
    h.advance(2);
    h.get("/a", &[]);
    assert_eq!(h.origin_hits(), 2, "NOW + 501 s: past the lease's bound, BYPASS");
}

/// The attack classes of docs/attack-surface.md, one test each.
#[path = "attack_tests.rs"]
mod attacks;
