//! Services loaded from the plugins folder: each sub-folder is a service with
//! its settings and up to four handler files (`handler.wasm` for every role,
//! `register.wasm`, `transfer.wasm`, `cleanup.wasm` to override one role).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use tokio::sync::Semaphore;

use crate::config::{GatewayConfig, ServiceConfig};
use crate::runtime::{HandlerModule, LoadError, Role, Runtime};

/// The handler file names, in the order they are looked up for a role.
pub const HANDLER_FILE: &str = "handler.wasm";

/// The file that overrides `handler.wasm` for one role.
pub fn role_file(role: Role) -> &'static str {
    match role {
        Role::Register => "register.wasm",
        Role::Transfer => "transfer.wasm",
        Role::Cleanup => "cleanup.wasm",
    }
}

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
    /// When it was loaded.
    pub loaded_at: SystemTime,
}

/// The handler files of a service, by file.
#[derive(Debug, Clone, Default)]
pub(crate) struct HandlerSet {
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

    fn for_role(&self, role: Role) -> Option<&LoadedHandler> {
        let index = Role::ALL.iter().position(|r| *r == role)?;
        self.by_role[index].as_ref().or(self.shared.as_ref())
    }

    fn is_empty(&self) -> bool {
        self.shared.is_none() && self.by_role.iter().all(Option::is_none)
    }
}

/// One service: its settings, its handlers and its concurrency gate.
#[derive(Debug)]
pub struct Service {
    /// The service name (its folder name).
    pub name: Arc<str>,
    /// The service folder.
    pub dir: PathBuf,
    // std RwLocks: read on every event, written on reload, never held across
    // an await; readers clone the Arc or handle out.
    config: RwLock<Arc<ServiceConfig>>,
    handlers: RwLock<HandlerSet>,
    /// Handler calls of this service running at once.
    pub(crate) concurrency: Arc<Semaphore>,
    /// Set once "no transfer handler" has been logged for this service.
    pub(crate) warned_no_transfer: AtomicBool,
}

impl Service {
    fn new(name: &str, dir: PathBuf, config: ServiceConfig) -> Self {
        Self {
            name: name.into(),
            dir,
            concurrency: Arc::new(Semaphore::new(config.max_concurrency as usize)),
            config: RwLock::new(Arc::new(config)),
            handlers: RwLock::new(HandlerSet::default()),
            warned_no_transfer: AtomicBool::new(false),
        }
    }

    /// The current settings.
    pub fn config(&self) -> Arc<ServiceConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The handler that serves `role` now: its role file, else `handler.wasm`.
    pub fn handler(&self, role: Role) -> Option<LoadedHandler> {
        let handlers = self.handlers.read().unwrap_or_else(|e| e.into_inner());
        handlers.for_role(role).cloned()
    }

    /// Installs (or with `None` removes) the handler of one file, atomically.
    pub(crate) fn set_handler(&self, file: &str, handler: Option<LoadedHandler>) {
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
}

/// All services, by name. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Services {
    // A std RwLock: looked up on every request, changed only on (re)load.
    map: Arc<RwLock<HashMap<String, Arc<Service>>>>,
}

impl Services {
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

    fn insert(&self, service: Arc<Service>) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(service.name.to_string(), service);
    }

    /// Loads every service folder below `config.plugins_dir`. A folder whose
    /// settings or files fail is logged with the service and file and the
    /// rest keep loading; a bad `service.toml` keeps the service out.
    pub async fn load_all(runtime: &Runtime, config: &GatewayConfig) -> std::io::Result<Self> {
        let services = Services::default();
        let mut entries: Vec<(String, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&config.plugins_dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_valid_service_name(&name) {
                tracing::warn!(folder = %entry.path().display(), "skipping folder: not a valid service name (use letters, digits, '-' and '_')");
                continue;
            }
            entries.push((name, entry.path()));
        }
        entries.sort();
        let mut loads = Vec::new();
        for (name, dir) in entries {
            let service_config = match ServiceConfig::load(&dir, config) {
                Ok(c) => c,
                Err(error) => {
                    tracing::error!(service = %name, %error, "service not loaded: bad service.toml");
                    continue;
                }
            };
            let service = Arc::new(Service::new(&name, dir, service_config));
            services.insert(service.clone());
            for file in std::iter::once(HANDLER_FILE).chain(Role::ALL.iter().map(|r| role_file(*r)))
            {
                let path = service.dir.join(file);
                if !path.exists() {
                    continue;
                }
                let runtime = runtime.clone();
                let service = service.clone();
                loads.push(tokio::task::spawn_blocking(move || {
                    let result = load_file(&runtime, &service.name, file, &path);
                    (service, file, result)
                }));
            }
        }
        for load in loads {
            let (service, file, result) = load.await.expect("plugin load task panicked");
            match result {
                Ok(handler) => service.set_handler(file, Some(handler)),
                Err(error) => {
                    tracing::error!(service = %service.name, file, %error, "handler not loaded")
                }
            }
        }
        for name in services.names() {
            let service = services.get(&name).expect("just inserted");
            if service.has_no_handlers() {
                tracing::warn!(service = %name, "service has no handler files: every client is accepted and its messages are dropped");
            } else {
                tracing::info!(service = %name, "service loaded");
            }
        }
        Ok(services)
    }
}

/// Reads and compiles one handler file. Blocking.
pub(crate) fn load_file(
    runtime: &Runtime,
    service: &str,
    file: &'static str,
    path: &Path,
) -> Result<LoadedHandler, PluginError> {
    let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
        service: service.to_owned(),
        file: file.to_owned(),
        source,
    })?;
    let started = Instant::now();
    let module = runtime.load(&bytes).map_err(|source| PluginError::Load {
        service: service.to_owned(),
        file: file.to_owned(),
        source,
    })?;
    tracing::info!(
        service,
        file,
        bytes = bytes.len(),
        compile_ms = started.elapsed().as_millis() as u64,
        "handler loaded"
    );
    Ok(LoadedHandler {
        module,
        file,
        loaded_at: SystemTime::now(),
    })
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
