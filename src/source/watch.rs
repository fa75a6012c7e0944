//! Watches the config directory and turns bursts of file events into single reloads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Paths that changed since the source last looked, so a reload re-reads only those files.
#[derive(Default, Debug)]
pub struct Changed {
    pub paths: BTreeSet<PathBuf>,
    /// Something happened that paths cannot describe (a watch error, a folder swapped under a
    /// ConfigMap mount): re-read the whole tree.
    pub rescan: bool,
    /// Files written to but not closed yet: a reload waits for them (up to the quiet period).
    pub writing: BTreeSet<PathBuf>,
}

impl Changed {
    /// What changed since the last call, for a reload; files still being written stay tracked.
    pub fn take(&mut self) -> Changed {
        Changed {
            paths: std::mem::take(&mut self.paths),
            rescan: std::mem::take(&mut self.rescan),
            writing: BTreeSet::new(),
        }
    }
}

/// How long to wait for more events once every written file was closed (or renamed into
/// place): long enough to catch the rest of a burst, such as a `git checkout`.
const SETTLE: Duration = Duration::from_millis(2);

pub type SharedChanges = Arc<Mutex<Changed>>;

/// Starts a recursive watch on `root`. Each message on the returned channel means "something
/// changed, reload": sent [`SETTLE`] after the last event once every file written to was closed
/// again (a write is complete then), else after `quiet` without events, and at most
/// `max_delay` after the first event of a burst, so a steady trickle of writes cannot postpone
/// a reload forever. What changed accumulates in the returned [`SharedChanges`].
pub fn watch(
    root: &Path,
    quiet: Duration,
    max_delay: Duration,
) -> anyhow::Result<(
    notify::RecommendedWatcher,
    mpsc::Receiver<()>,
    SharedChanges,
)> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let changes = SharedChanges::default();
    let changed = changes.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let mut changed = changed.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Ok(event) if is_relevant(&event) => {
                for path in &event.paths {
                    if path
                        .components()
                        .any(|c| c.as_os_str().to_string_lossy().starts_with(".."))
                    {
                        changed.rescan = true;
                    }
                }
                if event.need_rescan() {
                    changed.rescan = true;
                }
                track_writes(&mut changed.writing, &event);
                changed.paths.extend(event.paths);
                let _ = raw_tx.send(());
            }
            Ok(_) => {}
            // Overflowed queues and similar: re-read everything.
            Err(err) => {
                tracing::warn!(error = %err, "file watch error; reloading");
                changed.rescan = true;
                // Close events may be lost too: fall back to the quiet period, not forever.
                changed.writing.clear();
                let _ = raw_tx.send(());
            }
        }
    })
    .context("cannot start file watcher")?;
    watcher
        .watch(root, RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", root.display()))?;

    let (tx, rx) = mpsc::channel(1);
    let writing = changes.clone();
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            let first = Instant::now();
            loop {
                let settled = writing
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .writing
                    .is_empty();
                let wait = if settled { SETTLE.min(quiet) } else { quiet };
                let deadline = (Instant::now() + wait).min(first + max_delay);
                match tokio::time::timeout_at(deadline, raw_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            tracing::debug!(
                waited_ms = first.elapsed().as_secs_f64() * 1e3,
                "config directory changed; reloading"
            );
            // A reload already queued covers this burst too.
            let _ = tx.try_send(());
        }
    });
    Ok((watcher, rx, changes))
}

/// Files open for writing: created or modified and not yet closed. A file renamed into place
/// or removed is complete.
fn track_writes(writing: &mut BTreeSet<PathBuf>, event: &notify::Event) {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
    match event.kind {
        EventKind::Create(CreateKind::File) | EventKind::Modify(ModifyKind::Data(_)) => {
            writing.extend(event.paths.iter().cloned());
        }
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(_))
        | EventKind::Remove(_) => {
            for path in &event.paths {
                writing.remove(path);
            }
        }
        _ => {}
    }
}

/// Ignores events that cannot change the config (reads, hidden or non-YAML files), but keeps
/// directory events, since a renamed or removed folder takes its files with it. Closing a file
/// after writing counts: it tells the debounce the write is complete.
fn is_relevant(event: &notify::Event) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match event.kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        notify::EventKind::Access(_) => return false,
        _ => {}
    }
    event.paths.iter().any(|path| {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        super::files::is_yaml(&name) || path.extension().is_none() || name.starts_with("..data")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{
        AccessKind, AccessMode, CreateKind, DataChange, ModifyKind, RemoveKind, RenameMode,
    };
    use notify::{Event, EventKind};

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn a_write_is_pending_until_the_file_is_closed_renamed_or_removed() {
        let mut writing = BTreeSet::new();
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        track_writes(
            &mut writing,
            &event(EventKind::Create(CreateKind::File), "a.yaml"),
        );
        track_writes(
            &mut writing,
            &event(
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                "b.yaml",
            ),
        );
        assert_eq!(writing.len(), 2);
        assert!(is_relevant(&event(closed, "a.yaml")));
        track_writes(&mut writing, &event(closed, "a.yaml"));
        assert_eq!(
            writing.iter().collect::<Vec<_>>(),
            [&PathBuf::from("b.yaml")]
        );
        track_writes(
            &mut writing,
            &event(
                EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                "b.yaml",
            ),
        );
        assert!(writing.is_empty());
        track_writes(
            &mut writing,
            &event(EventKind::Create(CreateKind::File), "c.yaml"),
        );
        track_writes(
            &mut writing,
            &event(EventKind::Remove(RemoveKind::File), "c.yaml"),
        );
        assert!(writing.is_empty());
        // Reads never count.
        let read = EventKind::Access(AccessKind::Close(AccessMode::Read));
        assert!(!is_relevant(&event(read, "a.yaml")));
    }
}
