//! `kairo test` without an event file: runs the rule tests beside the rules
//! and handlers and prints each case as passed or failed, or JUnit XML.

use std::path::Path;
use std::process::ExitCode;

use kairo_router::KairoConfig;
use kairo_router::plan::Plan;
use kairo_router::rule_test::{SuiteReport, junit_xml, run_suite};

/// How `kairo test` reports the rule tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per case; failures side by side with the traces.
    Text,
    /// JUnit XML on standard output.
    Junit,
}

/// Runs every test file in `rules` and `handlers`; fails when any case fails,
/// a file cannot be read, or a rule or handler does not load.
pub fn run(
    config: &KairoConfig,
    rules: &Path,
    handlers: &Path,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let plan = Plan::compile(config, rules, handlers, &[], reqwest::Client::new())?;
    let report = run_suite(&plan, rules, handlers);
    match format {
        Format::Junit => println!("{}", junit_xml(&report)?),
        Format::Text => print!("{}", text(&report)),
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The report for a person.
pub fn text(report: &SuiteReport) -> String {
    let mut out = String::new();
    for problem in &report.left_out {
        out.push_str(&format!("error: {problem}\n"));
    }
    for file in &report.files {
        out.push_str(&format!("{}\n", file.path.display()));
        if let Some(error) = &file.error {
            out.push_str(&format!("  error {error}\n"));
        }
        for case in &file.cases {
            if case.passed() {
                out.push_str(&format!("  passed  {}\n", case.name));
            } else {
                out.push_str(&format!("  FAILED  {}\n", case.name));
                out.push_str(&case.describe_failure());
            }
        }
    }
    let (cases, failed) = report.counts();
    if report.files.is_empty() {
        out.push_str("no rule tests found (NAME.test.toml beside the rules and handlers)\n");
    }
    out.push_str(&format!(
        "{cases} case(s): {} passed, {failed} failed\n",
        cases - failed
    ));
    out
}
