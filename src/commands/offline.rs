//! `validate`, `status` and `translate`: load a directory once and print what Portico makes of it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use portico_translator::{Feedback, Options, Severity};

use crate::cli::Format;
use crate::pipeline;
use crate::source::files::{DirSource, Loaded};

fn load(dir: &Path) -> anyhow::Result<(Loaded, portico_translator::Translation)> {
    if !dir.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    let loaded = DirSource::new(dir).load();
    let translation =
        pipeline::translate(&loaded.resources, &Options::default(), &Feedback::default())
            .map_err(anyhow::Error::msg)?;
    Ok((loaded, translation))
}

/// Exit 0 when clean, 1 when any object is invalid or not accepted, 2 when input cannot be
/// read or parsed.
pub fn validate(dir: &Path) -> anyhow::Result<ExitCode> {
    if !dir.is_dir() {
        eprintln!("{}: not a directory", dir.display());
        return Ok(ExitCode::from(2));
    }
    let (loaded, translation) = load(dir)?;
    let problems = pipeline::all_problems(&loaded.problems, &translation);
    for problem in &problems {
        println!("{problem}");
    }
    Ok(if loaded.unreadable() {
        ExitCode::from(2)
    } else if problems.iter().any(|p| p.severity == Severity::Error) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn status(dir: &Path, format: Format) -> anyhow::Result<ExitCode> {
    let (loaded, translation) = load(dir)?;
    for problem in pipeline::all_problems(&loaded.problems, &translation) {
        eprintln!("{problem}");
    }
    print(
        &portico_translator::status_documents(&translation.statuses),
        format,
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn translate(
    dir: &Path,
    gateway: &str,
    format: Format,
    show_secrets: bool,
) -> anyhow::Result<ExitCode> {
    crate::bootstrap::split_gateway(gateway)?;
    let (loaded, translation) = load(dir)?;
    for problem in pipeline::all_problems(&loaded.problems, &translation) {
        eprintln!("{problem}");
    }
    let Some(fleet) = translation.fleets.get(gateway) else {
        let known: Vec<&str> = translation.fleets.keys().map(String::as_str).collect();
        bail!(
            "no fleet {gateway:?}: it must be a Gateway of a Portico GatewayClass (fleets: {known:?})"
        );
    };
    let mut value = fleet.to_json();
    if !show_secrets {
        super::redact::redact(&mut value);
    }
    print(&value, format)?;
    Ok(ExitCode::SUCCESS)
}

fn print(value: &serde_json::Value, format: Format) -> anyhow::Result<()> {
    let text = match format {
        Format::Yaml => serde_yaml::to_string(value).context("rendering YAML")?,
        Format::Json => serde_json::to_string_pretty(value).context("rendering JSON")? + "\n",
    };
    print!("{text}");
    Ok(())
}
