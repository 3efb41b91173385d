//! The pipeline example users copy (`examples/github-actions/edgegen-release.yml`) calls the
//! `edgegen` CLI as it is: every subcommand and flag it uses exists (checked against the real
//! binary's `--help`), so renaming a flag without the example fails here.

use std::collections::BTreeSet;

const WORKFLOW: &str = include_str!("../../../examples/github-actions/edgegen-release.yml");

/// Each `edgegen` invocation in the workflow's shell lines: (subcommand words, flags).
fn invocations(text: &str) -> Vec<(Vec<String>, BTreeSet<String>)> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut out = Vec::new();
    for line in logical {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        for (i, _) in tokens.iter().enumerate().filter(|(_, t)| **t == "edgegen") {
            let rest = &tokens[i + 1..];
            let Some(sub) = rest.first().filter(|s| s.chars().all(|c| c.is_ascii_lowercase() || c == '-')) else {
                continue;
            };
            let mut words = vec![(*sub).to_owned()];
            if matches!(*sub, "sync" | "tenant") {
                words.extend(rest.get(1).map(|s| (*s).to_owned()));
            }
            let flags = rest
                .iter()
                .take_while(|t| !matches!(**t, ">" | "|" | "||" | "&&" | ";"))
                .filter_map(|t| t.strip_prefix("--"))
                .map(|f| format!("--{}", f.split('=').next().unwrap_or(f)))
                .collect();
            out.push((words, flags));
        }
    }
    out
}

#[test]
fn the_release_workflow_uses_only_real_subcommands_and_flags() {
    let calls = invocations(WORKFLOW);
    let used: BTreeSet<String> = calls.iter().map(|(w, _)| w.join(" ")).collect();
    for expected in ["plan", "sync hosts", "release", "rollback", "status"] {
        assert!(used.contains(expected), "the workflow no longer runs `edgegen {expected}`: {used:?}");
    }
    for (words, flags) in calls {
        let out =
            std::process::Command::new(env!("CARGO_BIN_EXE_edgegen")).args(&words).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "`edgegen {} --help` failed: {}",
            words.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        for flag in flags {
            assert!(help.contains(&flag), "`edgegen {}` has no {flag}:\n{help}", words.join(" "));
        }
    }
}

#[test]
fn invocations_are_found_across_continuation_lines() {
    let calls =
        invocations("run: |\n  edgegen release --json \\\n    --wait --timeout 9 > out\n  # edgegen purge --x\n");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, ["release"]);
    assert_eq!(calls[0].1.iter().map(String::as_str).collect::<Vec<_>>(), ["--json", "--timeout", "--wait"]);
}
