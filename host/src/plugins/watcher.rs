//! Watches the plugins folder and reloads services whose files changed.
//!
//! File-system events are reduced to the service they concern (the first path
//! component below the plugins folder) and debounced per service: a service is
//! reconciled once its folder has been quiet for the debounce window, so a
//! file written in pieces, or written under a temporary name and renamed into
//! place, is read once, complete.
//!
//! Only events that can change what is loaded count: a file created,
//! written, closed after writing, renamed or removed, or its metadata
//! changed. Opening, reading and closing a file unwritten — which the
//! gateway itself does when it loads a file — are ignored, so loading
//! never schedules another load. Reconciling then skips files whose `stat`
//! is unchanged, and compares content hashes before compiling, so a
//! spurious event costs a `stat`, not a read or a compile.

use std::collections::HashMap;
use std::path::{Component, Path};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, MetadataKind, ModifyKind};
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Services;
use crate::state::Router;

/// What the watcher task is told.
enum Change {
    /// Something below this service folder changed.
    Service(String),
    /// Events were lost or the whole tree changed: reconcile everything.
    Everything,
}

/// A running watcher; dropping it stops watching.
pub(crate) struct PluginWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for PluginWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginWatcher").finish_non_exhaustive()
    }
}

/// Starts watching `services.plugins_dir()` recursively.
pub(crate) fn watch(
    services: Services,
    router: Router,
    debounce: Duration,
    stop: CancellationToken,
) -> notify::Result<PluginWatcher> {
    let root = services
        .plugins_dir()
        .canonicalize()
        .unwrap_or_else(|_| services.plugins_dir().to_owned());
    let (sender, receiver) = mpsc::unbounded_channel();
    let event_root = root.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let change = match event {
            Ok(event) if event.need_rescan() => Some(Change::Everything),
            Ok(event) if !changes_content(&event.kind) => None,
            Ok(event) => {
                for path in &event.paths {
                    if let Some(service) = service_of(&event_root, path) {
                        let _ = sender.send(Change::Service(service));
                    }
                }
                None
            }
            Err(error) => {
                tracing::warn!(%error, "plugins watcher error; reloading everything");
                Some(Change::Everything)
            }
        };
        if let Some(change) = change {
            let _ = sender.send(change);
        }
    })?;
    watcher.watch(&root, RecursiveMode::Recursive)?;
    tokio::spawn(debounce_loop(services, router, receiver, debounce, stop));
    tracing::info!(folder = %root.display(), "watching plugins for changes");
    Ok(PluginWatcher { _watcher: watcher })
}

/// Whether an event can change what a service loads. Reads are not: the
/// gateway's own reads of its plugin files raise open, access and
/// close-without-write events.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Remove(_)
        | EventKind::Any
        | EventKind::Other => true,
    }
}

/// The service folder a path lies in, if it lies in one.
fn service_of(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    match relative.components().next()? {
        Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
        _ => None,
    }
}

async fn debounce_loop(
    services: Services,
    router: Router,
    mut changes: mpsc::UnboundedReceiver<Change>,
    debounce: Duration,
    stop: CancellationToken,
) {
    let mut due: HashMap<String, Instant> = HashMap::new();
    let mut everything: Option<Instant> = None;
    loop {
        let next = due.values().copied().chain(everything).min();
        let change = tokio::select! {
            _ = stop.cancelled() => return,
            change = changes.recv() => match change {
                Some(change) => Some(change),
                None => return,
            },
            _ = sleep_until(next) => None,
        };
        match change {
            Some(Change::Service(name)) => {
                due.insert(name, Instant::now() + debounce);
            }
            Some(Change::Everything) => everything = Some(Instant::now() + debounce),
            None => {
                let now = Instant::now();
                if everything.is_some_and(|at| at <= now) {
                    everything = None;
                    due.clear();
                    if let Err(error) = services.reconcile_all(&router).await {
                        tracing::error!(%error, "cannot read the plugins folder");
                    }
                    continue;
                }
                let ready: Vec<String> = due
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(name, _)| name.clone())
                    .collect();
                for name in ready {
                    due.remove(&name);
                    let services = services.clone();
                    let router = router.clone();
                    // One task per service: a large component compiling for
                    // one service does not hold back another's reload.
                    tokio::spawn(async move { services.reconcile(&name, &router).await });
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_a_file_is_not_a_change() {
        use notify::event::{CreateKind, DataChange, RemoveKind, RenameMode};
        for read in [
            AccessKind::Open(AccessMode::Any),
            AccessKind::Read,
            AccessKind::Close(AccessMode::Read),
            AccessKind::Any,
        ] {
            assert!(!changes_content(&EventKind::Access(read)), "{read:?}");
        }
        assert!(!changes_content(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::AccessTime
        ))));
        for change in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
            EventKind::Remove(RemoveKind::File),
        ] {
            assert!(changes_content(&change), "{change:?}");
        }
    }

    #[test]
    fn paths_map_to_their_service() {
        let root = Path::new("/p");
        assert_eq!(
            service_of(root, Path::new("/p/chat/handler.wasm")).as_deref(),
            Some("chat")
        );
        assert_eq!(
            service_of(root, Path::new("/p/chat")).as_deref(),
            Some("chat")
        );
        assert_eq!(service_of(root, Path::new("/p")), None);
        assert_eq!(service_of(root, Path::new("/elsewhere/x")), None);
    }
}
