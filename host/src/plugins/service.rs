//! One service: its settings, the handler files loaded for it (and those on
//! disk that have not loaded), its last load failures and its concurrency
//! cap. Everything here is swapped atomically on reload; calls already
//! running keep what they started with.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use serde::Serialize;

use super::concurrency::ConcurrencyCap;
use super::files::{Fingerprint, PluginFile};
use crate::config::ServiceConfig;
use crate::protocol::Role;
use crate::state::now_ms;
use crate::wasm::HandlerModule;

/// A loaded handler file.
#[derive(Debug, Clone)]
pub struct LoadedHandler {
    /// The prepared module.
    pub module: HandlerModule,
    /// The file it was loaded from.
    pub file: PluginFile,
    /// SHA-256 of the file's bytes.
    pub hash: Arc<str>,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Time spent compiling (or loading from the cache) and linking.
    pub compile_ms: u64,
    /// Whether the compiled code came from the on-disk cache.
    pub from_cache: bool,
}

/// What is known of one handler file.
#[derive(Debug, Clone, Default)]
struct FileSlot {
    /// The version serving now.
    loaded: Option<LoadedHandler>,
    /// Whether the file was on disk when the folder was last read, loaded
    /// or not (compiling, or refused).
    on_disk: bool,
}

/// The handler files of a service, indexed as [`PluginFile::HANDLERS`].
#[derive(Debug, Clone, Default)]
struct HandlerSet {
    slots: [FileSlot; PluginFile::HANDLERS.len()],
}

impl HandlerSet {
    fn slot(&self, file: PluginFile) -> Option<&FileSlot> {
        self.slots.get(file.handler_index()?)
    }

    fn slot_mut(&mut self, file: PluginFile) -> Option<&mut FileSlot> {
        self.slots.get_mut(file.handler_index()?)
    }

    /// What serves `role`: the loaded role file, else the loaded shared
    /// file (a role file still compiling or refused leaves the previous
    /// arrangement serving, as a swap does). `Err` names a file that is on
    /// disk while nothing loaded can serve the role: the service is not
    /// ready. `Ok(None)`: no file for the role at all.
    fn for_role(&self, role: Role) -> Result<Option<&LoadedHandler>, PluginFile> {
        let files = PluginFile::serving(role);
        let slots = files.map(|file| self.slot(file));
        if let Some(loaded) = slots.iter().flatten().find_map(|slot| slot.loaded.as_ref()) {
            return Ok(Some(loaded));
        }
        match files
            .iter()
            .zip(slots)
            .find(|(_, slot)| slot.is_some_and(|slot| slot.on_disk))
        {
            Some((file, _)) => Err(*file),
            None => Ok(None),
        }
    }

    fn is_empty(&self) -> bool {
        self.slots.iter().all(|slot| slot.loaded.is_none())
    }
}

/// The last failure to load one file, kept for `/admin/services`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadFailure {
    /// What went wrong.
    pub error: String,
    /// The content hash of the bytes that failed (none for `service.toml`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// When, in ms since the Unix epoch.
    pub at: u64,
}

/// One service: its settings, its handlers and its concurrency cap.
#[derive(Debug)]
pub struct Service {
    /// The service name (its folder name).
    pub name: Arc<str>,
    /// The service folder.
    pub dir: PathBuf,
    // std locks: read on every event, written on reload, never held across an
    // await; readers clone the Arc or handler out.
    config: RwLock<Arc<ServiceConfig>>,
    handlers: RwLock<HandlerSet>,
    failures: Mutex<BTreeMap<PluginFile, LoadFailure>>,
    /// The fingerprint of each file when it was last read, so a folder
    /// whose files did not change is not read again.
    seen: Mutex<HashMap<PluginFile, Fingerprint>>,
    /// Handler calls of this service running at once.
    pub(crate) concurrency: ConcurrencyCap,
    /// The gateway's call slots this service holds (see
    /// [`super::FairSlots`]).
    pub(crate) slots_held: Arc<super::fair_share::Holding>,
    /// This service's CPU-bound calls, niced together.
    pub(crate) cpu: Arc<crate::wasm::ServiceCpu>,
    /// Set once "no transfer handler" has been logged for this service.
    pub(crate) warned_no_transfer: AtomicBool,
    /// Serialises reloads of this service.
    pub(super) reloading: Arc<tokio::sync::Mutex<()>>,
    /// This service's metric series, resolved once.
    pub(crate) metrics: crate::metrics::ServiceMetrics,
}

impl Service {
    pub(super) fn new(name: &str, dir: PathBuf, config: ServiceConfig) -> Self {
        Self {
            name: name.into(),
            dir,
            concurrency: ConcurrencyCap::new(config.max_concurrency as usize),
            slots_held: Arc::default(),
            cpu: Arc::default(),
            config: RwLock::new(Arc::new(config)),
            handlers: RwLock::new(HandlerSet::default()),
            failures: Mutex::new(BTreeMap::new()),
            seen: Mutex::default(),
            warned_no_transfer: AtomicBool::new(false),
            reloading: Arc::default(),
            metrics: crate::metrics::global().service(name),
        }
    }

    /// The current settings.
    pub fn config(&self) -> Arc<ServiceConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the settings for events that start from now on.
    pub(super) fn set_config(&self, config: ServiceConfig) {
        let mut current = self.config.write().unwrap_or_else(|e| e.into_inner());
        self.concurrency.set_limit(config.max_concurrency as usize);
        *current = Arc::new(config);
    }

    /// The handler that serves `role` now: its role file, else
    /// `handler.wasm`; `None` when the service has no file for the role.
    /// `Err` names a file on disk that has not loaded while nothing else
    /// can serve the role: the caller must not act as if there were none.
    pub fn handler(&self, role: Role) -> Result<Option<LoadedHandler>, PluginFile> {
        let handlers = self.handlers.read().unwrap_or_else(|e| e.into_inner());
        handlers
            .for_role(role)
            .map(Option::<&LoadedHandler>::cloned)
    }

    /// `Err` names a handler file on disk that has not loaded while nothing
    /// else serves a role of the connection's life: until it loads, the
    /// service refuses WebSocket clients. (A file of the HTTP or timer role
    /// holds back only its own trigger, through [`Service::handler`].)
    pub fn readiness(&self) -> Result<(), PluginFile> {
        let handlers = self.handlers.read().unwrap_or_else(|e| e.into_inner());
        Role::WEBSOCKET
            .iter()
            .try_for_each(|role| handlers.for_role(*role).map(|_| ()))
    }

    /// The handler loaded from one file, if any.
    pub fn handler_file(&self, file: PluginFile) -> Option<LoadedHandler> {
        let handlers = self.handlers.read().unwrap_or_else(|e| e.into_inner());
        handlers.slot(file)?.loaded.clone()
    }

    /// Installs (or with `None` removes) the handler of one file, atomically:
    /// calls already running keep the version they started with.
    pub(super) fn set_handler(&self, file: PluginFile, handler: Option<LoadedHandler>) {
        let mut handlers = self.handlers.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = handlers.slot_mut(file) {
            slot.loaded = handler;
        }
    }

    /// Records whether a handler file is on disk.
    pub(super) fn set_on_disk(&self, file: PluginFile, on_disk: bool) {
        let mut handlers = self.handlers.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = handlers.slot_mut(file) {
            slot.on_disk = on_disk;
        }
    }

    /// Whether no handler file is loaded at all.
    pub fn has_no_handlers(&self) -> bool {
        self.handlers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    pub(super) fn record_failure(&self, file: PluginFile, error: String, hash: Option<String>) {
        let failure = LoadFailure {
            error,
            hash,
            at: now_ms(),
        };
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(file, failure);
    }

    pub(super) fn clear_failure(&self, file: PluginFile) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&file);
    }

    /// The last load failure of each file that currently has one.
    pub fn failures(&self) -> BTreeMap<PluginFile, LoadFailure> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Remembers the fingerprint of a file just read (`None`: the file is
    /// gone); whether it differs from the one last remembered.
    pub(super) fn remember(&self, file: PluginFile, fingerprint: Option<Fingerprint>) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let previous = match fingerprint {
            Some(fingerprint) => seen.insert(file, fingerprint),
            None => seen.remove(&file),
        };
        previous != fingerprint
    }

    /// The last load failure of one file, if it has one now.
    pub(crate) fn failure(&self, file: PluginFile) -> Option<LoadFailure> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&file)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_on_disk_that_has_not_loaded_makes_its_role_not_ready() {
        let service = Service::new("svc", PathBuf::from("svc"), ServiceConfig::default());
        // Nothing on disk: every role has the default behaviour.
        assert!(service.handler(Role::Register).unwrap().is_none());
        assert_eq!(service.readiness(), Ok(()));
        // handler.wasm is compiling: every role waits for it.
        service.set_on_disk(PluginFile::SharedHandler, true);
        assert_eq!(
            service.handler(Role::Register).unwrap_err(),
            PluginFile::SharedHandler
        );
        assert_eq!(service.readiness(), Err(PluginFile::SharedHandler));
        // Only cleanup.wasm is compiling: register and transfer are fine.
        service.set_on_disk(PluginFile::SharedHandler, false);
        let cleanup = PluginFile::RoleHandler(Role::Cleanup);
        service.set_on_disk(cleanup, true);
        assert!(service.handler(Role::Register).unwrap().is_none());
        assert_eq!(service.handler(Role::Cleanup).unwrap_err(), cleanup);
        assert_eq!(service.readiness(), Err(cleanup));
        service.set_on_disk(cleanup, false);
        assert_eq!(service.readiness(), Ok(()));
        // http.wasm compiling holds back HTTP requests only.
        let http = PluginFile::RoleHandler(Role::Http);
        service.set_on_disk(http, true);
        assert_eq!(service.readiness(), Ok(()));
        assert_eq!(service.handler(Role::Http).unwrap_err(), http);
        assert!(service.handler(Role::Timer).unwrap().is_none());
    }
}
