//! The README's main job: `edgegen-demo --once` (what `cargo xtask demo --once` runs) passes.

#[test]
fn demo_once_passes() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgegen-demo")).arg("--once").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("all checks passed: the release converged."), "{stdout}");
    // The live-data contract check caught initech's legacy `trial` plan before the commit,
    // then passed for every tenant after the data fix.
    assert!(
        stdout.contains("refused, nothing moved") && stdout.contains("initech /users/2/profile at /plan"),
        "{stdout}"
    );
    assert!(stdout.contains("60 sample(s) of 12 tenant(s)") && stdout.contains("60 valid, 0 invalid"), "{stdout}");
}
