//! The Fastly Compute entry point. On `wasm32` it wires requests to the platform
//! ([`platform`]); natively there is nothing to run (the logic lives in the library, tested
//! natively), so the binary explains how to build it.

#[cfg(target_arch = "wasm32")]
mod platform;

#[cfg(target_arch = "wasm32")]
#[fastly::main]
fn main(req: fastly::Request) -> Result<fastly::Response, fastly::Error> {
    Ok(platform::handle(req))
}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "edgegen-edge is a Fastly Compute program: build it with \
         `cargo build -p edgegen-edge --release --target wasm32-wasip1` and run it under Viceroy"
    );
    std::process::ExitCode::from(2)
}
