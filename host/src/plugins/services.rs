//! All services, and loading one to match its folder.
//!
//! Loading and reloading are one operation, [`Services::reconcile`]: it makes
//! what is loaded for a service match what is on disk — a new folder goes
//! live, a changed file is compiled off the async runtime and swapped in
//! atomically, a deleted role file falls back, a deleted folder closes its
//! connections. A file that fails keeps the previous version serving. A file
//! whose `stat` has not changed since it was last read is not read again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use super::fair_share::FairSlots;
use super::files::{Fingerprint, PluginFile};
use super::read::{is_real_folder, read_plugin_file, ReadError};
use super::service::{LoadedHandler, Service};
use crate::config::{ConfigError, GatewayConfig, ServiceConfig, MAX_SETTINGS_FILE_BYTES};
use crate::protocol::CloseCause;
use crate::state::Router;
use crate::wasm::cache::{content_hash, CompileCache};
use crate::wasm::{LoadError, Runtime};

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
    /// The file could not be read, or is not one the gateway reads.
    #[error("plugin {service}/{file}: not read: {source}")]
    Read {
        /// The service.
        service: String,
        /// The file.
        file: PluginFile,
        /// Why.
        source: ReadError,
    },
    /// The file did not compile or link.
    #[error("plugin {service}/{file}: {source}")]
    Load {
        /// The service.
        service: String,
        /// The file.
        file: PluginFile,
        /// What went wrong.
        source: LoadError,
    },
}

/// All services, by name, and how to (re)load them. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Services {
    // A std RwLock: looked up on every request, changed only on (re)load.
    map: Arc<RwLock<HashMap<String, Arc<Service>>>>,
    runtime: Runtime,
    config: Arc<GatewayConfig>,
    cache: Option<CompileCache>,
    slots: FairSlots,
    /// Told whenever a service's timers may have changed: its settings were
    /// read anew, or it came or went (the timer scheduler waits on it).
    timers_changed: Arc<tokio::sync::Notify>,
}

impl Services {
    /// An empty set that loads from `config.plugins_dir`, through the
    /// compile cache when `config.cache_dir` is set.
    pub fn new(runtime: Runtime, config: GatewayConfig) -> Self {
        let cache = config.cache_dir.as_ref().and_then(|dir| {
            CompileCache::open(dir, runtime.engine(), config.cache_max_bytes)
                .map_err(|error| {
                    tracing::error!(dir = %dir.display(), %error, "compile cache refused; compiling every handler");
                })
                .ok()
        });
        Self {
            map: Arc::default(),
            runtime,
            slots: FairSlots::new(config.max_concurrency as usize),
            config: Arc::new(config),
            cache,
            timers_changed: Arc::default(),
        }
    }

    /// Notified when a service's timers may have changed.
    pub(crate) fn timers_changed(&self) -> Arc<tokio::sync::Notify> {
        self.timers_changed.clone()
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

    /// The gateway's handler-call slots, shared fairly between services.
    pub(crate) fn slots(&self) -> &FairSlots {
        &self.slots
    }

    /// The plugins folder.
    pub fn plugins_dir(&self) -> &Path {
        &self.config.plugins_dir
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

    /// Loads every service folder (after the watcher lost events):
    /// services are reconciled concurrently, files compile in the compile
    /// queue off the async runtime.
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
            if let Err(join) = task.await {
                tracing::error!(error = %join, "a service's reload task failed");
            }
        }
        Ok(())
    }

    /// Starts loading every service folder, at start-up: when it returns,
    /// every folder is a service (routable, refusing clients until its
    /// handler files have loaded) and its files are compiling; the returned
    /// [`Loading`] finishes when they all have.
    pub async fn start_all(&self, router: &Router) -> std::io::Result<Loading> {
        let mut pending = Vec::new();
        for name in self.folders_on_disk()? {
            pending.extend(self.begin(&name, router).await);
        }
        Ok(Loading { pending })
    }

    /// Makes the loaded state of one service match its folder.
    pub async fn reconcile(&self, name: &str, router: &Router) {
        if let Some(pending) = self.begin(name, router).await {
            pending.finish().await;
        }
    }

    /// The first half of [`Services::reconcile`]: reads the settings, marks
    /// every changed handler file and starts its load, and makes a new
    /// service routable. `None`: nothing left to wait for.
    async fn begin(&self, name: &str, router: &Router) -> Option<Pending> {
        if !is_valid_service_name(name) {
            return None;
        }
        tracing::debug!(service = %name, "reconciling the service with its folder");
        let dir = self.config.plugins_dir.join(name);
        // A folder that is a link to elsewhere is not a service.
        if !is_real_folder(&dir) {
            self.remove(name, router);
            return None;
        }
        let (service, new) = match self.get(name) {
            Some(service) => (service, false),
            None => {
                // Taken before the read, so a change during it is seen later.
                let seen = Self::fingerprint(&dir, PluginFile::Settings);
                match self.read_settings(&dir).await {
                    Ok(config) => {
                        let service = Service::new(name, dir.clone(), config);
                        // What was just read need not be read again below.
                        service.remember(PluginFile::Settings, seen);
                        (Arc::new(service), true)
                    }
                    Err(error) => {
                        tracing::error!(service = %name, file = %PluginFile::Settings, %error, "service not loaded: bad service.toml");
                        return None;
                    }
                }
            }
        };
        let guard = service.reloading.clone().lock_owned().await;
        let was_live = !service.has_no_handlers();
        self.reload_settings(&service).await;
        // Every file on disk is marked (and its compile started) before a
        // new service becomes routable, so it refuses clients until its
        // handlers have loaded instead of skipping their checks.
        let loads: Vec<_> = PluginFile::HANDLERS
            .into_iter()
            .filter_map(|file| Some((file, self.reload_file(&service, file)?)))
            .collect();
        let service = if new {
            let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
            let service = map.entry(name.to_owned()).or_insert(service).clone();
            self.timers_changed.notify_one();
            service
        } else {
            service
        };
        Some(Pending {
            service,
            was_live,
            loads,
            _reloading: guard,
        })
    }

    /// Reads and parses a folder's `service.toml`, on a blocking thread.
    async fn read_settings(&self, dir: &Path) -> Result<ServiceConfig, ConfigError> {
        let (dir, gateway) = (dir.to_owned(), self.config.clone());
        tokio::task::spawn_blocking(move || read_settings(&dir, &gateway))
            .await
            .unwrap_or_else(|panic| {
                Err(ConfigError::Read {
                    path: PathBuf::from(PluginFile::Settings.name()),
                    source: std::io::Error::other(panic.to_string()),
                })
            })
    }

    /// The fingerprint of one file of the service folder `dir` now (`None`:
    /// it is not there).
    fn fingerprint(dir: &Path, file: PluginFile) -> Option<Fingerprint> {
        std::fs::symlink_metadata(dir.join(file.name()))
            .ok()
            .map(|metadata| Fingerprint::of(&metadata))
    }

    /// The fingerprint of one file of `service` if it changed since it was
    /// last read (`Some(None)`: it is gone); `None` when it did not change.
    fn changed(&self, service: &Service, file: PluginFile) -> Option<Option<Fingerprint>> {
        let fingerprint = Self::fingerprint(&service.dir, file);
        service.remember(file, fingerprint).then_some(fingerprint)
    }

    async fn reload_settings(&self, service: &Service) {
        let file = PluginFile::Settings;
        if self.changed(service, file).is_none() {
            return;
        }
        tracing::debug!(service = %service.name, %file, "plugin file changed on disk; reading it");
        match self.read_settings(&service.dir).await {
            Ok(config) => {
                service.clear_failure(file);
                if *service.config() != config {
                    service.set_config(config);
                    self.timers_changed.notify_one();
                    tracing::info!(service = %service.name, %file, "settings loaded");
                }
            }
            Err(error) => {
                let message = error.to_string();
                let already = service
                    .failure(file)
                    .is_some_and(|failure| failure.error == message);
                if !already {
                    tracing::error!(service = %service.name, %file, error = %message, "bad service.toml: keeping the previous settings");
                    service.record_failure(file, message, None);
                }
            }
        }
    }

    /// Starts reloading one handler file if it changed; `None` if nothing to do.
    fn reload_file(
        &self,
        service: &Arc<Service>,
        file: PluginFile,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if self.changed(service, file)?.is_none() {
            service.set_on_disk(file, false);
            service.clear_failure(file);
            if service.handler_file(file).is_some() {
                service.set_handler(file, None);
                tracing::info!(service = %service.name, %file, "handler file removed: its role falls back");
            }
            return None;
        }
        tracing::debug!(service = %service.name, %file, "plugin file changed on disk; reading it");
        // On disk from now on, whatever the read finds: a file that cannot
        // be loaded keeps its role from being served without it.
        service.set_on_disk(file, true);
        let runtime = self.runtime.clone();
        let cache = self.cache.clone();
        let service = service.clone();
        let limit = self.config.max_plugin_file_bytes;
        Some(tokio::spawn(async move {
            let dir = service.dir.clone();
            let read =
                tokio::task::spawn_blocking(move || read_plugin_file(&dir, file.name(), limit))
                    .await
                    .unwrap_or_else(|panic| {
                        Err(ReadError::Io(std::io::Error::other(panic.to_string())))
                    });
            let bytes = match read {
                Ok(bytes) => bytes,
                Err(source) => {
                    let error = PluginError::Read {
                        service: service.name.to_string(),
                        file,
                        source,
                    };
                    tracing::error!(service = %service.name, %file, %error, "handler not loaded");
                    service.record_failure(file, error.to_string(), None);
                    return;
                }
            };
            let hash = content_hash(&bytes);
            let unchanged = service
                .handler_file(file)
                .is_some_and(|loaded| *loaded.hash == hash);
            let failed_before = service
                .failure(file)
                .is_some_and(|failure| failure.hash.as_deref() == Some(hash.as_str()));
            if unchanged || failed_before {
                return;
            }
            let started = Instant::now();
            let size = bytes.len();
            let compiled = with_progress(
                runtime.load_cached(bytes.into(), &hash, cache.as_ref()),
                runtime.compile_progress_every(),
                |elapsed| {
                    tracing::info!(
                        service = %service.name,
                        %file,
                        bytes = size,
                        elapsed = %format_args!("{:.1}s", elapsed.as_secs_f64()),
                        "still compiling"
                    );
                },
            )
            .await;
            let compile_ms = started.elapsed().as_millis() as u64;
            crate::metrics::global().handler_loaded(
                compiled.as_ref().ok().map(|(_, from_cache)| *from_cache),
                cache.is_some(),
                started.elapsed(),
            );
            match compiled {
                Ok((module, from_cache)) => {
                    let previous = service.handler_file(file).map(|h| h.hash);
                    let shared_code = module.reused_code();
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
                        %file,
                        hash = %hash,
                        previous = previous.as_deref().unwrap_or("none"),
                        compile_ms,
                        from_cache,
                        shared_code,
                        "handler loaded"
                    );
                }
                Err(source) => {
                    let error = PluginError::Load {
                        service: service.name.to_string(),
                        file,
                        source,
                    };
                    let keeping = if service.handler_file(file).is_some() {
                        "the previous version keeps serving"
                    } else {
                        "nothing loaded for this file"
                    };
                    tracing::error!(service = %service.name, %file, hash = %hash, %error, "handler rejected; {keeping}");
                    service.record_failure(file, error.to_string(), Some(hash));
                }
            }
        }))
    }

    /// Takes a service out: no new connections; its live connections close
    /// with 1001 and their cleanup runs on the last loaded cleanup handler
    /// (each connection task holds the service).
    fn remove(&self, name: &str, router: &Router) {
        let removed = {
            let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
            let removed = map.remove(name);
            self.timers_changed.notify_one();
            removed
        };
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
}

/// A service whose handler files are loading; see [`Services::begin`].
struct Pending {
    service: Arc<Service>,
    was_live: bool,
    loads: Vec<(PluginFile, tokio::task::JoinHandle<()>)>,
    /// Held until the loads end: reloads of one service do not overlap.
    _reloading: tokio::sync::OwnedMutexGuard<()>,
}

impl Pending {
    /// Waits for the loads started by [`Services::begin`].
    async fn finish(self) {
        let service = &self.service;
        for (file, load) in self.loads {
            if let Err(join) = load.await {
                // A bug of the gateway's own load path, not of the file: the
                // file fails to load and its role keeps failing closed.
                let error = format!(
                    "plugin {}/{file}: the load task failed: {join}",
                    service.name
                );
                tracing::error!(service = %service.name, %file, %error, "handler not loaded");
                service.record_failure(file, error, None);
            }
        }
        if !self.was_live && service.has_no_handlers() && service.failures().is_empty() {
            tracing::warn!(service = %service.name, "service has no handler files: every client is accepted and its messages are dropped");
        }
    }
}

/// The loads started at start-up ([`Services::start_all`]).
pub struct Loading {
    pending: Vec<Pending>,
}

impl Loading {
    /// Waits until every handler file found at start-up has loaded or
    /// failed.
    pub async fn finish(self) {
        for pending in self.pending {
            pending.finish().await;
        }
    }
}

/// Reads and parses the `service.toml` of `dir` (blocking); a missing file
/// gives the defaults.
fn read_settings(dir: &Path, gateway: &GatewayConfig) -> Result<ServiceConfig, ConfigError> {
    let name = PluginFile::Settings.name();
    let path = dir.join(name);
    match read_plugin_file(dir, name, MAX_SETTINGS_FILE_BYTES) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => ServiceConfig::parse(&text, &path, gateway),
            Err(_) => Err(ConfigError::Read {
                path,
                source: std::io::Error::other("is not UTF-8"),
            }),
        },
        Err(ReadError::NotFound) => Ok(ServiceConfig::defaults(gateway)),
        Err(error) => Err(ConfigError::Read {
            path,
            source: std::io::Error::other(error.to_string()),
        }),
    }
}

/// Awaits `work`, calling `report` with the time elapsed once every
/// `every` while it runs: a long compile at start-up says what it is doing.
async fn with_progress<F: std::future::Future>(
    work: F,
    every: std::time::Duration,
    report: impl Fn(std::time::Duration),
) -> F::Output {
    let started = Instant::now();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(work);
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = ticks.tick() => report(started.elapsed()),
        }
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
