//! A minimal Core Cache edge, the baseline of the HIT-throughput benchmark (BENCHMARKS.md):
//! keyed by the raw path and query, it serves a found object or fetches from `origin` and
//! stores it for 60 s. No tenants, manifests, metadata or checks. Never deployed.

#[cfg(target_arch = "wasm32")]
fn main() {
    use std::io::Write as _;
    use std::time::Duration;

    use fastly::cache::core::Transaction;
    use fastly::http::StatusCode;
    use fastly::{Request, Response};

    let req = Request::from_client();
    let key: fastly::cache::core::CacheKey = req.get_url().path().as_bytes().to_vec().into();
    let response = match Transaction::lookup(key).execute() {
        Ok(txn) => match txn.found() {
            Some(found) => match found.to_stream() {
                Ok(body) => Response::from_status(StatusCode::OK).with_body(body),
                Err(_) => Response::from_status(StatusCode::BAD_GATEWAY),
            },
            None => match req.send("origin") {
                Ok(mut resp) => {
                    let body = resp.take_body_bytes();
                    if txn.must_insert_or_update()
                        && let Ok(mut w) = txn.insert(Duration::from_secs(60)).execute()
                    {
                        let _ = w.write_all(&body).and_then(|()| w.finish());
                    }
                    resp.with_body(body)
                }
                Err(_) => Response::from_status(StatusCode::BAD_GATEWAY),
            },
        },
        Err(_) => Response::from_status(StatusCode::SERVICE_UNAVAILABLE),
    };
    response.send_to_client();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    eprintln!("edgegen-minimal-edge is a Fastly Compute program (benchmark baseline): build it for wasm32-wasip1");
    std::process::ExitCode::from(2)
}
