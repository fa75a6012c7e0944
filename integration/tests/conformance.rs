//! The Gateway API conformance suite (`../shared/conformance`) against the real binary and
//! real Envoy. Fails on any failing case that is not listed, with a reason, in
//! `conformance-expected-failures.txt`, and on any listed case that now passes (so the list
//! only shrinks). `PORTICO_CONFORMANCE_WRITE_EXPECTED=1` rewrites the list from this run.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::bail;
use portico_integration::conformance::runner::progress;
use portico_integration::conformance::skip::expected_failures;
use portico_integration::conformance::{CaseResult, Outcome, RunnerConfig, render_table, run_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() -> anyhow::Result<()> {
    let config = RunnerConfig::from_env();
    if !config.dir.join("cases").is_dir() {
        bail!(
            "no conformance cases at {} (set PORTICO_CONFORMANCE_DIR)",
            config.dir.display()
        );
    }
    let list = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance-expected-failures.txt");
    let expected = expected_failures(&list)?;
    let results = run_all(config.clone()).await?;
    progress(&format!("\n{}", render_table(&results, &expected)));

    if std::env::var_os("PORTICO_CONFORMANCE_WRITE_EXPECTED").is_some() {
        if config.only.is_some() {
            bail!(
                "PORTICO_CONFORMANCE_WRITE_EXPECTED needs the whole suite (unset PORTICO_CONFORMANCE_ONLY)"
            );
        }
        std::fs::write(&list, render_expected(&results))?;
        progress(&format!("wrote {}", list.display()));
        return Ok(());
    }

    let mut problems = Vec::new();
    for result in &results {
        match (&result.outcome, expected.get(&result.name)) {
            (Outcome::Fail(reason), None) => {
                problems.push(format!("{} failed: {reason}", result.name))
            }
            (Outcome::Pass, Some(_)) => problems.push(format!(
                "{} passes now: remove it from {}",
                result.name,
                list.display()
            )),
            _ => {}
        }
    }
    if !problems.is_empty() {
        bail!(
            "{} conformance problem(s):\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
    Ok(())
}

/// The expected-failures file for the failures of this run, reasons shortened to one line.
fn render_expected(results: &[CaseResult]) -> String {
    let mut out = String::from(
        "# Conformance tests that fail today, one per line: <TestName> <reason>.\n\
         # The conformance test fails if a listed test passes: remove it then. Regenerate with\n\
         # PORTICO_CONFORMANCE_WRITE_EXPECTED=1 cargo test -p portico-integration --test conformance\n",
    );
    let failures: BTreeMap<&str, &str> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Fail(reason) => Some((r.name.as_str(), reason.as_str())),
            _ => None,
        })
        .collect();
    for (name, reason) in failures {
        let reason: String = reason.split_whitespace().collect::<Vec<_>>().join(" ");
        let short = match reason.char_indices().nth(160) {
            Some((i, _)) => format!("{}...", &reason[..i]),
            None => reason,
        };
        out.push_str(&format!("{name} {short}\n"));
    }
    out
}
