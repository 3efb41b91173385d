//! Native tests of the edge against the published classes of web-cache poisoning, cache
//! deception, tenant crossing and report abuse (docs/attack-surface.md lists each class, the
//! defence and its test). Each test plays the attacker's request, then a victim's plain one,
//! and checks what the victim got and what the origin saw.

use edgegen_shared::probe;

use super::*;

/// An origin that answers every request with `status`, `headers` and a body naming the
/// request number and the target it saw.
fn echo(
    status: u16,
    headers: &'static [(&'static str, &'static str)],
) -> impl FnMut(&Request, usize) -> Result<Fetched, String> {
    move |req, n| {
        let target = match &req.query {
            Some(q) => format!("{}?{q}", req.path),
            None => req.path.clone(),
        };
        Ok(fetched(status, headers, &format!("{n} {target}")))
    }
}

#[test]
fn unkeyed_override_headers_in_any_spelling_never_reach_the_origin() {
    // The origin would answer anything steered by an override header with an error page.
    let mut h = h(|req: &Request, n| {
        let steered = req.headers.iter().any(|(name, _)| crate::UNKEYED_REQUEST_HEADERS.contains(&name));
        let status = if steered { 404 } else { 200 };
        Ok(fetched(status, &[("cache-control", "public, max-age=600")], &format!("{n}")))
    });
    for listed in crate::UNKEYED_REQUEST_HEADERS {
        let title: String =
            listed.split('-').map(|w| w[..1].to_ascii_uppercase() + &w[1..]).collect::<Vec<_>>().join("-");
        let underscore = listed.replace('-', "_").to_ascii_uppercase();
        for name in [listed.to_owned(), title, underscore] {
            let attack = h.get("/page", &[(name.as_str(), "evil.example")]);
            assert_eq!(attack.status, 200, "{name} steered the origin");
            let sent = h.p.origin_requests.last().unwrap();
            assert!(sent.headers.iter().all(|(n, _)| !n.eq_ignore_ascii_case(&name)), "{name} reached the origin");
        }
    }
    assert_eq!(h.get("/page", &[]).status, 200);
}

#[test]
fn method_override_headers_cannot_store_another_methods_answer() {
    // HMO (CPDoS): an origin honouring X-HTTP-Method-Override would answer a DELETE.
    let mut h = h(|req: &Request, n| {
        let overridden = req.headers.iter().any(|(name, _)| name.replace('_', "-").contains("method"));
        let status = if overridden { 405 } else { 200 };
        Ok(fetched(status, &[("cache-control", "max-age=600")], &format!("{n}")))
    });
    for name in ["X-HTTP-Method-Override", "x_http_method", "X-Method-Override", "x-original-method"] {
        h.get("/hmo", &[(name, "DELETE")]);
    }
    let victim = h.get("/hmo", &[]);
    assert_eq!((victim.status, victim.body.as_str()), (200, "1"), "the first answer was the plain GET's");
}

#[test]
fn request_provoked_errors_are_never_stored_cpdos() {
    // HHO / HMC: the origin rejects an oversized or malformed header with an error that a
    // blanket rule marks cacheable; the victim's clean request must reach the origin again.
    for status in freshness::REQUEST_ERROR_STATUSES {
        let mut h = h(move |req: &Request, n| {
            let bad = req.headers.iter().any(|(_, v)| v.len() > 8192 || v.iter().any(|b| b.is_ascii_control()));
            let (status, cc) = if bad { (status, "public, max-age=31536000") } else { (200, "max-age=600") };
            Ok(fetched(status, &[("cache-control", cc), ("surrogate-control", "max-age=3600")], &format!("{n}")))
        });
        let oversized = "x".repeat(20_000);
        assert_eq!(h.get("/cpdos", &[("x-oversized", &oversized)]).status, status);
        assert_eq!(h.get("/cpdos", &[("x-meta", "a\u{7}b")]).status, status);
        let victim = h.get("/cpdos", &[]);
        assert_eq!((victim.status, victim.body.as_str()), (200, "3"), "status {status} was stored");
    }
}

#[test]
fn fat_get_bodies_and_framing_headers_never_reach_the_origin() {
    let mut h = h(echo(200, &[("cache-control", "max-age=600")]));
    let mut fat = request(
        "GET",
        "/fat?x=1",
        &[("content-length", "11"), ("transfer-encoding", "chunked"), ("content-type", "application/json")],
    );
    fat.body = br#"{"x":"evil"}"#.to_vec();
    h.send(fat);
    let sent = &h.p.origin_requests[0];
    assert!(sent.body.is_empty());
    assert!(!sent.headers.contains("content-length") && !sent.headers.contains("transfer-encoding"));
    let mut head = request("HEAD", "/fat?x=1", &[("content-length", "3")]);
    head.body = b"abc".to_vec();
    h.send(head);
    assert_eq!(h.origin_hits(), 1, "HEAD answered from the stored GET");
}

/// The key and the origin request are one normalization: whatever a raw target looks like,
/// the stored answer a client gets is the origin's answer to exactly the target it forwards
/// for that client (so no two targets the origin can tell apart share an object).
#[test]
fn delimiter_and_path_confusion_keys_exactly_what_the_origin_sees() {
    let mut h = h(echo(200, &[("cache-control", "max-age=600")]));
    let targets = [
        "/p?a=1&b=2",
        "/p?b=2&a=1",
        "/p?a=1;b=2",
        "/p?a=1&a=2",
        "/p?a=2&a=1",
        "/p?a=1%26b=2",
        "/p?a%3D1",
        "/p?a=1+2",
        "/p?a=1%202",
        "/p?callback=x&utm=y;callback=evil",
        "/p%2fq",
        "/p/q",
        "/p%2Fq",
        "/p/%2e%2e/q",
        "/q",
        "/p/./q",
        "/p//q",
        "/p/q/",
        "/p%3fa=1",
        "/p%23frag",
        "/static/..;/admin",
        "/admin;.css",
        "/admin%2f..%2fstatic.css",
        "/admin\\..\\static.css",
        "/%7Euser",
        "/~user",
        "/P/q",
    ];
    for round in 0..2 {
        for raw in targets {
            let seen = h.get(raw, &[]);
            assert_eq!(seen.status, 200, "{raw}");
            let (path, query) = raw.split_once('?').map_or((raw, None), |(p, q)| (p, Some(q)));
            let forwarded = Target::at(path, query).unwrap().primary.path_and_query();
            let (_, answered_for) = seen.body.split_once(' ').unwrap();
            assert_eq!(answered_for, forwarded, "round {round}: {raw} got the answer for another target");
        }
    }
}

#[test]
fn unkeyable_targets_pass_and_are_never_stored() {
    let mut h = h(echo(200, &[("cache-control", "max-age=600")]));
    let long = format!("/{}", "a".repeat(edgegen_shared::key::MAX_PATH_LEN + 1));
    for raw in ["/bad%zz", "/bad%4", long.as_str()] {
        h.get(raw, &[]);
        h.get(raw, &[]);
    }
    assert_eq!(h.origin_hits(), 6, "every unkeyable request went to the origin, none was stored");
}

#[test]
fn host_spelling_selects_the_same_tenant_and_nothing_else_does() {
    let mut h = h(echo(200, &[("cache-control", "max-age=600")]));
    h.get("/h", &[]);
    for host in ["A.TEST", "a.test.", "a.test:8443", " a.test "] {
        let mut req = request("GET", "/h", &[]);
        req.headers.set("host", host.as_bytes().to_vec());
        assert_eq!(h.send(req).body, "1 /h", "{host:?}");
    }
    for (host, status) in [("a.test.evil", 404), ("evil@a.test", 400), ("a.test/x", 400), ("", 400), ("a.test..", 404)]
    {
        let mut req = request("GET", "/h", &[]);
        req.headers.set("host", host.as_bytes().to_vec());
        assert_eq!(h.send(req).status, status, "{host:?}");
    }
    let mut none = request("GET", "/h", &[]);
    none.headers.remove("host");
    assert_eq!(h.send(none).status, 400);
    assert_eq!(h.get("/h", &[("host", "a.test")]).status, 400, "two Host lines");
    assert_eq!(h.origin_hits(), 1);
    // The origin sees the canonical host, never the client's spelling.
    assert!(h.p.origin_requests.iter().all(|r| r.headers.get("host") == Some("a.test")));
}

#[test]
fn a_client_cannot_choose_the_tenant_or_scope_with_edgegen_headers() {
    let mut h = h(echo(200, &[("cache-control", "max-age=600")]));
    h.get(
        "/t",
        &[
            ("edgegen-tenant", "beta"),
            ("EDGEGEN_TENANT", "beta"),
            ("edgegen-generation", "1"),
            ("edgegen-schema", "0.0.1"),
            ("connection", "edgegen-tenant, host, edgegen-contract"),
        ],
    );
    let sent = &h.p.origin_requests[0];
    let tenants: Vec<&[u8]> = sent.headers.all("edgegen-tenant").collect();
    assert_eq!(tenants, [b"acme".as_slice()], "only the edge's own claim");
    assert_eq!(sent.headers.get("edgegen-schema"), Some("1.8.3"));
    assert!(sent.headers.contains("edgegen-contract") && sent.headers.get("host") == Some("a.test"));
    assert!(!sent.headers.contains("edgegen-generation") && !sent.headers.contains("edgegen_tenant"));
}

#[test]
fn hop_by_hop_nomination_cannot_strip_what_the_edge_relies_on() {
    let mut h = h(echo(200, &[("cache-control", "max-age=600")]));
    // Nominating Authorization/Cookie hides them from the origin: the request is then
    // anonymous for the cache too (checked after hygiene), so nothing personal is stored.
    h.get("/hop", &[("authorization", "Bearer alice"), ("connection", "authorization, keep-alive")]);
    let sent = &h.p.origin_requests[0];
    assert!(!sent.headers.contains("authorization"));
    assert_eq!(h.get("/hop", &[]).body, "1 /hop", "stored: the origin answered an anonymous request");
}

#[test]
fn range_on_a_miss_stores_the_whole_object() {
    let mut h = h(echo(200, &[("cache-control", "max-age=600")]));
    let part = h.get("/r", &[("range", "bytes=0-1"), ("if-range", "\"nope\"")]);
    assert!(!h.p.origin_requests[0].headers.contains("range"), "the origin is asked for the whole object");
    assert!(!h.p.origin_requests[0].headers.contains("if-range"));
    assert_eq!(part.status, 200, "a failing If-Range gets the whole object");
    let part = h.get("/r", &[("range", "bytes=0-1")]);
    assert_eq!((part.status, part.body.as_str()), (206, "1 "));
    let whole = h.get("/r", &[]);
    assert_eq!((whole.status, whole.body.as_str()), (200, "1 /r"));
    assert_eq!(h.origin_hits(), 1);
}

#[test]
fn vary_star_and_oversized_vary_lists_are_never_stored() {
    let names: &'static str = Box::leak(
        (0..=edgegen_shared::key::MAX_VARY_HEADERS)
            .map(|i| format!("x-v{i}"))
            .collect::<Vec<_>>()
            .join(", ")
            .into_boxed_str(),
    );
    for vary in ["*", "accept, *", names, "bad name", "x-v\u{0}"] {
        let headers: &'static [(&'static str, &'static str)] =
            Box::leak(vec![("cache-control", "max-age=600"), ("vary", vary)].into_boxed_slice());
        let mut h = h(echo(200, headers));
        h.get("/v", &[]);
        assert_eq!(h.get("/v", &[]).body, "2 /v", "Vary: {vary:?} was stored");
    }
}

#[test]
fn a_response_setting_a_cookie_is_never_served_to_another_client() {
    for cc in ["public, max-age=600", "s-maxage=600", "max-age=600, must-revalidate"] {
        let headers: &'static [(&'static str, &'static str)] =
            Box::leak(vec![("cache-control", cc), ("set-cookie", "session=alice")].into_boxed_slice());
        let mut h = h(echo(200, headers));
        assert_eq!(h.get("/login", &[]).header("set-cookie"), Some("session=alice"), "the client's own answer");
        let other = h.get("/login", &[]);
        assert_eq!(other.body, "2 /login", "{cc}: stored with a Set-Cookie");
    }
}

#[test]
fn private_and_authenticated_answers_are_never_served_to_others() {
    // Any line, any case, any governing field.
    for lines in [
        vec![("cache-control", "max-age=600"), ("cache-control", "PRIVATE")],
        vec![("cache-control", "max-age=600, private=\"set-cookie\", no-store")],
        vec![("surrogate-control", "max-age=600"), ("surrogate-control", "no-store")],
        vec![("cdn-cache-control", "max-age=600, private")],
    ] {
        let headers: &'static [(&'static str, &'static str)] = Box::leak(lines.clone().into_boxed_slice());
        let mut h = h(echo(200, headers));
        h.get("/me", &[]);
        assert_eq!(h.get("/me", &[]).body, "2 /me", "{lines:?}");
    }
    // Without the tenant's credentials setting, a credentialed request never touches the cache.
    let mut h = h(echo(200, &[("cache-control", "public, max-age=600")]));
    h.get("/acct", &[("cookie", "session=alice")]);
    h.get("/acct", &[("authorization", "Basic YWxpY2U6eA==")]);
    assert_eq!(h.get("/acct", &[]).body, "3 /acct");
}

#[test]
fn a_redirect_reflecting_an_unkeyed_header_cannot_be_poisoned() {
    let mut h = h(|req: &Request, n| {
        let host = req.headers.get("x-forwarded-host").or(req.headers.get("host")).unwrap_or("?").to_owned();
        let location = format!("https://{host}/login");
        Ok(fetched(302, &[("cache-control", "max-age=600"), ("location", &location)], &format!("{n}")))
    });
    let attack = h.get("/go", &[("x-forwarded-host", "evil.example"), ("X_Forwarded_Host", "evil.example")]);
    assert_eq!(attack.header("location"), Some("https://a.test/login"));
    assert_eq!(h.get("/go", &[]).header("location"), Some("https://a.test/login"));
}

#[test]
fn a_cors_grant_for_one_origin_is_never_served_to_another() {
    // The origin reflects `Origin` but forgot `Vary: Origin`.
    let mut h = h(|req: &Request, n| {
        let origin = req.headers.get("origin").unwrap_or("https://a.test").to_owned();
        Ok(fetched(200, &[("cache-control", "max-age=600"), ("access-control-allow-origin", &origin)], &format!("{n}")))
    });
    h.get("/api", &[("origin", "https://evil.example")]);
    let victim = h.get("/api", &[("origin", "https://a.test")]);
    assert_eq!(victim.header("access-control-allow-origin"), Some("https://a.test"));
    assert!(victim.headers.tokens("vary").contains(&"origin".to_owned()), "downstream caches are told too");
    assert_eq!(h.get("/api", &[("origin", "https://evil.example")]).body, "1", "each origin's grant is stored");
    // A 304 replacing the stored fields keeps the object's `Vary: Origin`.
    let mut reval = h_with(&[], |req: &Request, n| {
        let status = if req.headers.contains("if-none-match") { 304 } else { 200 };
        Ok(fetched(
            status,
            &[
                ("cache-control", "max-age=1"),
                ("etag", "\"v1\""),
                ("vary", "accept-encoding"),
                ("access-control-allow-origin", "https://app.example"),
            ],
            &format!("{n}"),
        ))
    });
    reval.get("/api", &[("origin", "https://app.example")]);
    reval.advance(5);
    let revalidated = reval.get("/api", &[("origin", "https://app.example")]);
    assert_eq!((revalidated.status, revalidated.body.as_str()), (200, "1"));
    assert!(revalidated.headers.tokens("vary").contains(&"origin".to_owned()), "{:?}", revalidated.headers);
    // A wildcard grant is the same for everyone: one object.
    let mut star = h_with(&[], echo(200, &[("cache-control", "max-age=600"), ("access-control-allow-origin", "*")]));
    star.get("/pub", &[("origin", "https://x.example")]);
    star.get("/pub", &[("origin", "https://y.example")]);
    assert_eq!(star.origin_hits(), 1);
}

#[test]
fn junk_variants_cannot_lock_a_urls_real_variants_out() {
    let mut h = h(echo(200, &[("cache-control", "max-age=600"), ("vary", "accept-encoding")]));
    for i in 0..MAX_VARIANTS * 2 {
        h.get("/ae", &[("accept-encoding", &format!("junk{i}"))]);
    }
    let before = h.origin_hits();
    h.get("/ae", &[("accept-encoding", "gzip, br")]);
    assert_eq!(h.get("/ae", &[("accept-encoding", "br, gzip")]).body, format!("{} /ae", before + 1));
    assert_eq!(h.origin_hits(), before + 1, "the real variant was stored past the flood");
}

#[test]
fn stale_if_error_cannot_be_stretched_by_a_client() {
    let mut h = h(|_, n| {
        if n == 1 {
            Ok(fetched(200, &[("cache-control", "max-age=1, stale-if-error=10")], "old"))
        } else {
            Ok(fetched(503, &[], "down"))
        }
    });
    h.get("/sie", &[]);
    h.advance(5);
    assert_eq!(h.get("/sie", &[]).body, "old", "within the object's window");
    h.advance(30);
    for cc in ["stale-if-error=100000", "max-stale=100000"] {
        let seen = h.get("/sie", &[("cache-control", cc)]);
        assert_eq!(seen.status, 503, "{cc}: stale served past the object's window");
    }
}

#[test]
fn error_redirect_and_default_answers_never_report() {
    // An unstamped origin layer (say an ingress) answers cacheable errors and redirects.
    let mut h = h(|req: &Request, _| {
        let status = match req.path.as_str() {
            "/moved" => 301,
            "/gone" => 410,
            "/missing" => 404,
            _ => 503,
        };
        Ok(Fetched {
            status,
            headers: [("cache-control".to_owned(), b"public, max-age=600".to_vec())].into_iter().collect(),
            body: Vec::new(),
        })
    });
    for _ in 0..3 {
        for path in ["/moved", "/gone", "/missing", "/down", "/missing?x=1"] {
            h.get(path, &[("cache-control", "no-cache")]);
        }
    }
    assert_eq!(h.reports(), 0, "anonymous traffic produced a report");
}

#[test]
fn probe_headers_need_a_valid_token_of_this_tenant() {
    let mut h = h(|_, n| {
        let mut f = fetched(200, &[("cache-control", "max-age=600"), ("edgegen-internal", "secret")], &format!("{n}"));
        f.headers.append("Edgegen_Debug", b"x".to_vec());
        Ok(f)
    });
    let now = NOW / 1000;
    let key = SecretKey::new("p", KEY).unwrap();
    let other_key = SecretKey::new("p", "another-probe-key-0123456789abcdef").unwrap();
    let beta = TenantId::new("beta").unwrap();
    let acme = TenantId::new("acme").unwrap();
    let forged = [
        probe::mint(&beta, now, now + 60, &key).unwrap(),
        probe::mint(&acme, now, now + 60, &other_key).unwrap(),
        probe::mint(&acme, now - 120, now - 60, &key).unwrap(),
        "garbage".to_owned(),
    ];
    for token in &forged {
        for path in ["/pr", STATE_PATH] {
            let seen = h.get(path, &[("edgegen-probe", token)]);
            let leaked: Vec<&str> =
                seen.headers.iter().map(|(n, _)| n).filter(|n| crate::is_edgegen_header(n)).collect();
            assert!(leaked.is_empty(), "{path} with {token:?} leaked {leaked:?}");
            assert!(!seen.body.contains("generation"), "{path}: the state was shown");
        }
    }
    let valid = probe::mint(&acme, now, now + 60, &key).unwrap();
    assert_eq!(h.get("/pr", &[("edgegen-probe", &valid)]).header("edgegen-tenant"), Some("acme"));
}

#[test]
fn cache_deception_depends_on_the_origins_directives_not_the_extension() {
    // The origin serves a private page for any path under /account (path confusion).
    let mut h = h(|req: &Request, n| {
        let cc = if req.path.starts_with("/account") { "private, max-age=600" } else { "max-age=600" };
        Ok(fetched(200, &[("cache-control", cc)], &format!("{n}")))
    });
    for path in ["/account/x.css", "/account;x.css", "/account%2fx.css", "/account/..%2fstatic.js", "/account.css"] {
        h.get(path, &[("cookie", "")]);
        h.get(path, &[]);
    }
    assert_eq!(h.origin_hits(), 10, "a private answer was stored for a static-looking path");
}

#[test]
fn unsafe_methods_only_invalidate_this_tenants_same_origin_targets() {
    let mut h = h(|req: &Request, n| {
        let location = if req.method == "POST" { "https://evil.example/victim" } else { "/x" };
        Ok(fetched(200, &[("cache-control", "max-age=600"), ("content-location", location)], &format!("{n}")))
    });
    h.get("/victim", &[]);
    h.send(request("POST", "/form", &[]));
    assert_eq!(h.get("/victim", &[]).body, "1", "a cross-origin Content-Location invalidated");
}

#[test]
fn vary_values_that_are_not_utf8_never_share_a_variant() {
    let mut h = h(|req: &Request, n| {
        let lang = req.headers.all("x-lang").next().map(<[u8]>::to_vec).unwrap_or_default();
        let mut f = fetched(200, &[("cache-control", "max-age=600"), ("vary", "x-lang")], &format!("{n}"));
        f.headers.append("x-seen", lang);
        Ok(f)
    });
    let mut attack = request("GET", "/l", &[]);
    attack.headers.append("x-lang", vec![0xFF]);
    h.send(attack);
    let mut victim = request("GET", "/l", &[]);
    victim.headers.append("x-lang", vec![0xFE]);
    assert_eq!(h.send(victim).body, "2", "two invalid values were read as one");
}

#[test]
fn host_aliases_of_a_tenant_share_objects_unless_the_origin_varies_on_host() {
    // Every host of a tenant is one cache namespace (the tenant's); an origin answering per
    // host says so with `Vary: Host`, which keys by the canonical host the origin saw.
    let mut h = h(|req: &Request, n| {
        let host = req.headers.get("host").unwrap_or("?").to_owned();
        let location = format!("https://{host}/login");
        Ok(fetched(
            302,
            &[("cache-control", "max-age=600"), ("vary", "Host"), ("location", &location)],
            &format!("{n}"),
        ))
    });
    h.p.hosts.insert("www.a.test".into(), "acme".into());
    let mut alias = request("GET", "/in", &[]);
    alias.headers.set("host", b"WWW.A.TEST".to_vec());
    assert_eq!(h.send(alias).header("location"), Some("https://www.a.test/login"));
    assert_eq!(h.get("/in", &[]).header("location"), Some("https://a.test/login"));
    assert_eq!(h.get("/in", &[]).body, "2");
}

#[test]
fn accept_encoding_normalization_keeps_what_changes_acceptability() {
    let value = |v: &str| {
        let mut h = Headers::new();
        h.append("accept-encoding", v.as_bytes().to_vec());
        normalized_vary_value("accept-encoding", &h).unwrap()
    };
    assert_eq!(value("gzip, deflate;q=0"), value("GZIP"), "an unlisted coding is refused anyway");
    assert_ne!(value("gzip, identity;q=0"), value("gzip"), "identity is acceptable unless refused");
    assert_ne!(value("gzip, *;q=0"), value("gzip"));
    assert_eq!(value("identity;q=0, gzip"), value("gzip;q=1, identity;Q=0"));
}
