//! Watches the config directory and turns bursts of file events into single reloads.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Starts a recursive watch on `root`. Each message on the returned channel means "something
/// changed, reload": sent after `quiet` without events, or at most `max_delay` after the first
/// event of a burst, so a steady trickle of writes cannot postpone a reload forever.
pub fn watch(
    root: &Path,
    quiet: Duration,
    max_delay: Duration,
) -> anyhow::Result<(notify::RecommendedWatcher, mpsc::Receiver<()>)> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            Ok(event) if is_relevant(&event) => {
                let _ = raw_tx.send(());
            }
            Ok(_) => {}
            // Overflowed queues and similar: a reload re-reads everything anyway.
            Err(err) => {
                tracing::warn!(error = %err, "file watch error; reloading");
                let _ = raw_tx.send(());
            }
        }
    })
    .context("cannot start file watcher")?;
    watcher
        .watch(root, RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", root.display()))?;

    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            let first = Instant::now();
            loop {
                let deadline = (Instant::now() + quiet).min(first + max_delay);
                match tokio::time::timeout_at(deadline, raw_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            // A reload already queued covers this burst too.
            let _ = tx.try_send(());
        }
    });
    Ok((watcher, rx))
}

/// Ignores events that cannot change the config (reads, hidden or non-YAML files), but keeps
/// directory events, since a renamed or removed folder takes its files with it.
fn is_relevant(event: &notify::Event) -> bool {
    if matches!(event.kind, notify::EventKind::Access(_)) {
        return false;
    }
    event.paths.iter().any(|path| {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        super::files::is_yaml(&name) || path.extension().is_none() || name.starts_with("..data")
    })
}
