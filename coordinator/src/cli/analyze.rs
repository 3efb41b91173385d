//! `edgegen plan` and `edgegen lint-schema`: release analysis on schema files alone (no
//! server). Settings come from the `[analysis]` section of `--config edgegen.toml`
//! (`tenant_column`, default `tenant_id`; `global_tables`, default none); without a config,
//! every table is a tenant table.
//!
//! Exit codes (ARCHITECTURE.md, "CLI"): 0 safe; 1 needs a release (changes that break cached data);
//! 2 blocked (isolation violations, unparseable or unsupported input).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use edgegen_analysis::isolation;

use crate::analysis::AnalysisConfig;
use edgegen_analysis::plan::{self, Report, schema_from};
use edgegen_analysis::{Dialect, diff};
use serde::Deserialize;

use super::{EXIT_INVALID, Exit};

/// `edgegen plan` arguments.
#[derive(clap::Args)]
pub struct PlanArgs {
    /// The schema before the release (full DDL).
    #[arg(long)]
    from: PathBuf,
    /// The schema after: a full DDL file, or a directory of migrations applied in file-name order onto --from.
    #[arg(long)]
    to: PathBuf,
    /// SQL dialect.
    #[arg(long, default_value = "postgres")]
    dialect: Dialect,
    /// JSON Schema of the contract before (as schemars emits it).
    #[arg(long)]
    contract_from: Option<PathBuf>,
    /// JSON Schema of the contract after.
    #[arg(long)]
    contract_to: Option<PathBuf>,
    /// edgegen.toml with an [analysis] section.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Saved responses to validate against --contract-to, as DIR/<tenant>/<name>.json (the
    /// live-data check, offline); failures block unless [analysis.live_check] policy = "warn".
    #[arg(long)]
    samples: Option<PathBuf>,
}

/// `edgegen lint-schema` arguments.
#[derive(clap::Args)]
pub struct LintArgs {
    /// Schema files, applied in order (e.g. a base DDL, then migrations).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// SQL dialect.
    #[arg(long, default_value = "postgres")]
    dialect: Dialect,
    /// edgegen.toml with an [analysis] section.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// The part of edgegen.toml these commands read (the rest belongs to `edgegen serve`).
#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    analysis: AnalysisConfig,
}

fn invalid(message: String) -> anyhow::Error {
    anyhow::Error::new(Exit { code: EXIT_INVALID, message })
}

fn load_config(config: Option<&Path>) -> anyhow::Result<AnalysisConfig> {
    let Some(path) = config else { return Ok(AnalysisConfig::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: ConfigFile = toml::from_str(&text).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    Ok(file.analysis)
}

/// An input that cannot be read blocks the analysis at that path.
fn unreadable(path: &Path, e: impl std::fmt::Display) -> edgegen_analysis::Blocked {
    edgegen_analysis::Blocked {
        location: edgegen_analysis::Location { file: path.display().to_string(), line: 0, column: 0 },
        message: e.to_string(),
    }
}

fn read(path: &Path) -> anyhow::Result<(String, String)> {
    let text = std::fs::read_to_string(path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    Ok((path.display().to_string(), text))
}

/// Runs `edgegen plan`.
///
/// # Errors
/// Unreadable inputs or config (exit 2).
pub fn plan(args: PlanArgs, json: bool) -> anyhow::Result<ExitCode> {
    let contracts = match (&args.contract_from, &args.contract_to) {
        (Some(from), Some(to)) => Some((read(from)?, read(to)?)),
        (None, None) => None,
        _ => return Err(invalid("--contract-from and --contract-to go together".into())),
    };
    if args.samples.is_some() && contracts.is_none() {
        return Err(invalid("--samples needs --contract-from and --contract-to".into()));
    }
    let config = load_config(args.config.as_deref())?;
    let settings = config.settings(args.dialect);
    let base = vec![read(&args.from)?];
    let outcome = (|| {
        let (before, after) = if args.to.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&args.to)
                .map_err(|e| unreadable(&args.to, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "sql"))
                .collect();
            entries.sort();
            let migrations =
                entries.iter().map(|e| read(e).map_err(|err| unreadable(e, err))).collect::<Result<Vec<_>, _>>()?;
            plan::migrated(&base, &migrations, args.dialect)?
        } else {
            let to = read(&args.to).map_err(|e| unreadable(&args.to, e))?;
            (schema_from(&base, args.dialect)?, schema_from(&[to], args.dialect)?)
        };
        let mut findings = diff::diff(&before, &after);
        findings.extend(isolation::lint(&after, &settings));
        if let Some(((of, ot), (nf, nt))) = &contracts {
            findings.extend(edgegen_analysis::contract::findings((of, ot), (nf, nt))?);
            if let Some(dir) = &args.samples {
                let policy = config.live_check.as_ref().map(|l| l.policy).unwrap_or_default();
                findings.extend(sample_findings(dir, (nf, nt), policy)?);
            }
        }
        Ok(findings)
    })();
    let report = plan::report(args.dialect, outcome);
    let routes = crate::analysis::affected_routes(&report, &config);
    if json {
        let mut value = serde_json::to_value(&report)?;
        value["affected_routes"] = serde_json::to_value(&routes)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print(&report, false)?;
        for r in &routes {
            println!("affects {} (surrogate key {}): {}", r.route, r.surrogate_key, r.reasons.join(", "));
        }
    }
    Ok(ExitCode::from(report.exit_code as u8))
}

/// The offline live-data check: every saved response that the new contract rejects (or that
/// is not JSON) is a finding at its file, line and column, naming the tenant and pointer.
fn sample_findings(
    dir: &Path,
    (contract_file, contract_text): (&str, &str),
    policy: crate::live_check::Policy,
) -> Result<Vec<edgegen_analysis::Finding>, edgegen_analysis::Blocked> {
    use crate::live_check::Outcome;
    use edgegen_analysis::{Finding, Location, Severity};
    let contract: serde_json::Value =
        serde_json::from_str(contract_text).map_err(|e| unreadable(Path::new(contract_file), e))?;
    let validator = crate::live_check::validator(&contract).map_err(|e| unreadable(Path::new(contract_file), e))?;
    let report = crate::live_check::read_dir(dir, &validator).map_err(|e| unreadable(dir, e))?;
    if report.samples.is_empty() {
        return Err(unreadable(dir, "no sample response (expected DIR/<tenant>/<name>.json)"));
    }
    let severity = match policy {
        crate::live_check::Policy::Block => Severity::Blocking,
        crate::live_check::Policy::Warn => Severity::Risky,
    };
    let mut out = Vec::new();
    for s in &report.samples {
        let at = |pointer: &str| {
            let text = std::fs::read_to_string(&s.path).unwrap_or_default();
            let (line, column) = edgegen_analysis::contract::locate(&text, pointer);
            Location { file: s.path.clone(), line, column }
        };
        match &s.outcome {
            Outcome::Valid => {}
            Outcome::Invalid { violations } => out.extend(violations.iter().map(|v| Finding {
                code: "contract_live_data_invalid",
                severity,
                table: None,
                column: Some(s.tenant.clone()),
                location: at(&v.pointer),
                message: format!(
                    "tenant {} holds data the new contract cannot read at {:?}: {}",
                    s.tenant, v.pointer, v.reason
                ),
            })),
            Outcome::Unverified { reason } => out.push(Finding {
                code: "contract_live_data_unverified",
                severity,
                table: None,
                column: Some(s.tenant.clone()),
                location: at(""),
                message: format!("tenant {}: sample not verified: {reason}", s.tenant),
            }),
        }
    }
    Ok(out)
}

/// Runs `edgegen lint-schema`.
///
/// # Errors
/// Unreadable inputs or config (exit 2).
pub fn lint(args: LintArgs, json: bool) -> anyhow::Result<ExitCode> {
    let settings = load_config(args.config.as_deref())?.settings(args.dialect);
    let files = args.files.iter().map(|p| read(p)).collect::<anyhow::Result<Vec<_>>>()?;
    let outcome = schema_from(&files, args.dialect).map(|s| isolation::lint(&s, &settings));
    let report = plan::report(args.dialect, outcome);
    print(&report, json)?;
    Ok(ExitCode::from(report.exit_code as u8))
}

fn print(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    println!("verdict: {} (exit {})   plan {}", report.verdict, report.exit_code, report.plan_hash);
    if let Some(why) = &report.blocked {
        println!("blocked: {why}");
    }
    let s = report.summary;
    println!("findings: {} blocking, {} breaking, {} risky, {} safe", s.blocking, s.breaking, s.risky, s.safe);
    if report.findings.is_empty() {
        return Ok(());
    }
    println!("\n{:<9} {:<38} {:<28} {:<24} why", "severity", "code", "where", "location");
    for f in &report.findings {
        let place = match (&f.table, &f.column) {
            (Some(t), Some(c)) => format!("{t}.{c}"),
            (Some(t), None) => t.clone(),
            (None, Some(c)) => c.clone(),
            (None, None) => String::new(),
        };
        let severity = serde_json::to_value(f.severity)?.as_str().unwrap_or("").to_owned();
        println!("{severity:<9} {:<38} {place:<28} {:<24} {}", f.code, f.location.to_string(), f.message);
    }
    Ok(())
}
