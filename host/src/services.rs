//! Services loaded from the plugins folder: each sub-folder is a service with
//! its settings and up to four handler files (`handler.wasm` for every role,
//! `register.wasm`, `transfer.wasm`, `cleanup.wasm` to override one role).
//!
//! Loading and reloading are one operation, [`Services::reconcile`]: it makes
//! what is loaded for a service match what is on disk — a new folder goes
//! live, a changed file is compiled off the async runtime and swapped in
//! atomically, a deleted role file falls back, a deleted folder closes its
//! connections. A file that fails keeps the previous version serving.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::Semaphore;

use crate::cache::{content_hash, CompileCache};
use crate::config::{GatewayConfig, ServiceConfig};
use crate::router::{CloseCause, Router};
use crate::runtime::{HandlerModule, LoadError, Role, Runtime};

/// The shared handler file, serving every role without its own file.
pub const HANDLER_FILE: &str = "handler.wasm";

/// The settings file of a service.
pub const SETTINGS_FILE: &str = "service.toml";

/// The file that overrides `handler.wasm` for one role.
pub fn role_file(role: Role) -> &'static str {
    match role {
        Role::Register => "register.wasm",
        Role::Transfer => "transfer.wasm",
        Role::Cleanup => "cleanup.wasm",
    }
}

/// Every handler file name a service folder may hold.
pub const HANDLER_FILES: [&str; 4] = [
    HANDLER_FILE,
    "register.wasm",
    "transfer.wasm",
    "cleanup.wasm",
];

/// Whether a folder name is a valid service name: ASCII letters, digits, `-`
/// and `_`, so it can appear in a URL path unescaped.
pub fn is_valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why a handler file was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read.
    #[error("plugin {service}/{file}: cannot read: {source}")]
    Read {
        /// The service.
        service: String,
        /// The file name.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file did not compile or link.
    #[error("plugin {service}/{file}: {source}")]
    Load {
        /// The service.
        service: String,
        /// The file name.
        file: String,
        /// What went wrong.
        source: LoadError,
    },
}

/// A loaded handler file.
#[derive(Debug, Clone)]
pub struct LoadedHandler {
    /// The prepared module.
    pub module: HandlerModule,
    /// The file name inside the service folder.
    pub file: &'static str,
    /// SHA-256 of the file's bytes.
    pub hash: Arc<str>,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Time spent compiling (or loading from the cache) and linking.
    pub compile_ms: u64,
    /// Whether the compiled code came from the on-disk cache.
    pub from_cache: bool,
}

/// The handler files of a service, by file.
#[derive(Debug, Clone, Default)]
struct HandlerSet {
    shared: Option<LoadedHandler>,
    by_role: [Option<LoadedHandler>; 3],
}

impl HandlerSet {
    fn slot(&mut self, file: &str) -> Option<&mut Option<LoadedHandler>> {
        if file == HANDLER_FILE {
            return Some(&mut self.shared);
        }
        Role::ALL
            .iter()
            .position(|role| role_file(*role) == file)
            .map(|index| &mut self.by_role[index])
    }

    fn get(&self, file: &str) -> Option<&LoadedHandler> {
        if file == HANDLER_FILE {
            return self.shared.as_ref();
        }
        let index = Role::ALL.iter().position(|role| role_file(*role) == file)?;
        self.by_role[index].as_ref()
    }

    fn for_role(&self, role: Role) -> Option<&LoadedHandler> {
        let index = Role::ALL.iter().position(|r| *r == role)?;
        self.by_role[index].as_ref().or(self.shared.as_ref())
    }

    fn is_empty(&self) -> bool {
        self.shared.is_none() && self.by_role.iter().all(Option::is_none)
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

/// One service: its settings, its handlers and its concurrency gate.
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
    failures: Mutex<BTreeMap<&'static str, LoadFailure>>,
    /// Handler calls of this service running at once.
    pub(crate) concurrency: Arc<Semaphore>,
    /// Set once "no transfer handler" has been logged for this service.
    pub(crate) warned_no_transfer: AtomicBool,
    /// Serialises reloads of this service.
    reloading: tokio::sync::Mutex<()>,
}

impl Service {
    fn new(name: &str, dir: PathBuf, config: ServiceConfig) -> Self {
        Self {
            name: name.into(),
            dir,
            concurrency: Arc::new(Semaphore::new(config.max_concurrency as usize)),
            config: RwLock::new(Arc::new(config)),
            handlers: RwLock::new(HandlerSet::default()),
            failures: Mutex::new(BTreeMap::new()),
            warned_no_transfer: AtomicBool::new(false),
            reloading: tokio::sync::Mutex::new(()),
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
    fn set_config(&self, config: ServiceConfig) {
        let mut current = self.config.write().unwrap_or_else(|e| e.into_inner());
        let (old, new) = (
            current.max_concurrency as usize,
            config.max_concurrency as usize,
        );
        if new > old {
            self.concurrency.add_permits(new - old);
        } else if new < old {
            // Takes away idle permits now; calls running above the new cap
            // finish first, so the cap shrinks as they do.
            self.concurrency.forget_permits(old - new);
        }
        *current = Arc::new(config);
    }

    /// The handler that serves `role` now: its role file, else `handler.wasm`.
    pub fn handler(&self, role: Role) -> Option<LoadedHandler> {
        let handlers = self.handlers.read().unwrap_or_else(|e| e.into_inner());
        handlers.for_role(role).cloned()
    }

    /// The handler loaded from one file, if any.
    pub fn handler_file(&self, file: &str) -> Option<LoadedHandler> {
        let handlers = self.handlers.read().unwrap_or_else(|e| e.into_inner());
        handlers.get(file).cloned()
    }

    /// Installs (or with `None` removes) the handler of one file, atomically:
    /// calls already running keep the version they started with.
    fn set_handler(&self, file: &str, handler: Option<LoadedHandler>) {
        let mut handlers = self.handlers.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = handlers.slot(file) {
            *slot = handler;
        }
    }

    /// Whether no handler file is loaded at all.
    pub fn has_no_handlers(&self) -> bool {
        self.handlers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    fn record_failure(&self, file: &'static str, error: String, hash: Option<String>) {
        let failure = LoadFailure {
            error,
            hash,
            at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(file, failure);
    }

    fn clear_failure(&self, file: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(file);
    }

    fn failed_hash(&self, file: &str) -> Option<String> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(file)
            .and_then(|failure| failure.hash.clone())
    }

    /// The last load failure of each file that currently has one.
    pub fn failures(&self) -> BTreeMap<&'static str, LoadFailure> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// All services, by name, and how to (re)load them. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Services {
    // A std RwLock: looked up on every request, changed only on (re)load.
    map: Arc<RwLock<HashMap<String, Arc<Service>>>>,
    runtime: Runtime,
    config: Arc<GatewayConfig>,
    cache: Option<CompileCache>,
}

impl Services {
    /// An empty set that loads from `config.plugins_dir`, through the
    /// compile cache when `config.cache_dir` is set.
    pub fn new(runtime: Runtime, config: GatewayConfig) -> Self {
        let cache = config.cache_dir.as_ref().and_then(|dir| {
            CompileCache::open(dir, runtime.engine())
                .map_err(|error| {
                    tracing::warn!(dir = %dir.display(), %error, "compile cache unavailable; compiling every handler");
                })
                .ok()
        });
        Self {
            map: Arc::default(),
            runtime,
            config: Arc::new(config),
            cache,
        }
    }

    /// The service of that name, if loaded.
    pub fn get(&self, name: &str) -> Option<Arc<Service>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Names of all loaded services, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Folder names below the plugins folder that are valid service names.
    fn folders_on_disk(&self) -> std::io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.config.plugins_dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if !is_valid_service_name(&name) {
                tracing::warn!(folder = %entry.path().display(), "skipping folder: not a valid service name (use letters, digits, '-' and '_')");
                continue;
            }
            names.push(name);
        }
        names.sort();
        Ok(names)
    }

    /// Loads every service folder (at start-up, or after the watcher lost
    /// events): services are reconciled concurrently, files compile in
    /// parallel off the async runtime.
    pub async fn reconcile_all(&self, router: &Router) -> std::io::Result<()> {
        let mut names = self.folders_on_disk()?;
        for loaded in self.names() {
            if !names.contains(&loaded) {
                names.push(loaded);
            }
        }
        let tasks: Vec<_> = names
            .into_iter()
            .map(|name| {
                let services = self.clone();
                let router = router.clone();
                tokio::spawn(async move { services.reconcile(&name, &router).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("service reload task panicked");
        }
        Ok(())
    }

    /// Makes the loaded state of one service match its folder.
    pub async fn reconcile(&self, name: &str, router: &Router) {
        if !is_valid_service_name(name) {
            return;
        }
        let dir = self.config.plugins_dir.join(name);
        if !dir.is_dir() {
            self.remove(name, router);
            return;
        }
        let service = match self.get(name) {
            Some(service) => service,
            None => match ServiceConfig::load(&dir, &self.config) {
                Ok(config) => {
                    let service = Arc::new(Service::new(name, dir.clone(), config));
                    self.map
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(name.to_owned())
                        .or_insert(service)
                        .clone()
                }
                Err(error) => {
                    tracing::error!(service = %name, file = %SETTINGS_FILE, %error, "service not loaded: bad service.toml");
                    return;
                }
            },
        };
        let _reloading = service.reloading.lock().await;
        let was_live = !service.has_no_handlers();
        self.reload_settings(&service);
        let mut loads = Vec::new();
        for file in HANDLER_FILES {
            if let Some(load) = self.reload_file(&service, file) {
                loads.push(load);
            }
        }
        for load in loads {
            load.await.expect("handler compile task panicked");
        }
        if !was_live && service.has_no_handlers() && service.failures().is_empty() {
            tracing::warn!(service = %name, "service has no handler files: every client is accepted and its messages are dropped");
        }
    }

    fn reload_settings(&self, service: &Service) {
        match ServiceConfig::load(&service.dir, &self.config) {
            Ok(config) => {
                service.clear_failure(SETTINGS_FILE);
                if *service.config() != config {
                    service.set_config(config);
                    tracing::info!(service = %service.name, file = %SETTINGS_FILE, "settings loaded");
                }
            }
            Err(error) => {
                let message = error.to_string();
                let already = service
                    .failures()
                    .get(SETTINGS_FILE)
                    .is_some_and(|failure| failure.error == message);
                if !already {
                    tracing::error!(service = %service.name, file = %SETTINGS_FILE, error = %message, "bad service.toml: keeping the previous settings");
                    service.record_failure(SETTINGS_FILE, message, None);
                }
            }
        }
    }

    /// Starts reloading one handler file if it changed; `None` if nothing to do.
    fn reload_file(
        &self,
        service: &Arc<Service>,
        file: &'static str,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let path = service.dir.join(file);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                service.clear_failure(file);
                if service.handler_file(file).is_some() {
                    service.set_handler(file, None);
                    tracing::info!(service = %service.name, file = %file, "handler file removed: its role falls back");
                }
                return None;
            }
            Err(source) => {
                let error = PluginError::Read {
                    service: service.name.to_string(),
                    file: file.to_owned(),
                    source,
                };
                tracing::error!(service = %service.name, file = %file, %error, "handler not loaded");
                service.record_failure(file, error.to_string(), None);
                return None;
            }
        };
        let hash = content_hash(&bytes);
        let unchanged = service
            .handler_file(file)
            .is_some_and(|loaded| *loaded.hash == hash);
        if unchanged || service.failed_hash(file).as_deref() == Some(hash.as_str()) {
            return None;
        }
        let runtime = self.runtime.clone();
        let cache = self.cache.clone();
        let service = service.clone();
        Some(tokio::spawn(async move {
            let started = Instant::now();
            let compiled = {
                let hash = hash.clone();
                tokio::task::spawn_blocking(move || {
                    runtime.load_cached(&bytes, &hash, cache.as_ref())
                })
                .await
                .expect("compile task panicked")
            };
            let compile_ms = started.elapsed().as_millis() as u64;
            match compiled {
                Ok((module, from_cache)) => {
                    let previous = service.handler_file(file).map(|h| h.hash);
                    service.set_handler(
                        file,
                        Some(LoadedHandler {
                            module,
                            file,
                            hash: hash.as_str().into(),
                            loaded_at: SystemTime::now(),
                            compile_ms,
                            from_cache,
                        }),
                    );
                    service.clear_failure(file);
                    tracing::info!(
                        service = %service.name,
                        file = %file,
                        hash = %hash,
                        previous = previous.as_deref().unwrap_or("none"),
                        compile_ms,
                        from_cache,
                        "handler loaded"
                    );
                }
                Err(source) => {
                    let error = PluginError::Load {
                        service: service.name.to_string(),
                        file: file.to_owned(),
                        source,
                    };
                    let keeping = if service.handler_file(file).is_some() {
                        "the previous version keeps serving"
                    } else {
                        "nothing loaded for this file"
                    };
                    tracing::error!(service = %service.name, file = %file, hash = %hash, %error, "handler rejected; {keeping}");
                    service.record_failure(file, error.to_string(), Some(hash));
                }
            }
        }))
    }

    /// Takes a service out: no new connections; its live connections close
    /// with 1001 and their cleanup runs on the last loaded cleanup handler
    /// (each connection task holds the service).
    fn remove(&self, name: &str, router: &Router) {
        let removed = self
            .map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if removed.is_some() {
            let connections = router.count(name);
            tracing::info!(
                service = %name,
                connections,
                "service folder removed: closing its connections"
            );
            router.close_all(Some(name), CloseCause::SERVICE_REMOVED);
        }
    }

    /// The plugins folder.
    pub fn plugins_dir(&self) -> &Path {
        &self.config.plugins_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        assert!(is_valid_service_name("echo-c_2"));
        assert!(!is_valid_service_name(""));
        assert!(!is_valid_service_name("a b"));
        assert!(!is_valid_service_name("../x"));
    }
}
