//! Services loaded from the plugins folder: each sub-folder
//! `plugins/<service>/` is a service with its settings and up to four
//! handler files ([`PluginFile`]), reloaded when they change on disk.
//!
//! - `files.rs`: the files a service folder may hold, and their fingerprints.
//! - `read.rs`: reading one without following links, blocking or
//!   overflowing.
//! - `service.rs`: one service: settings, loaded handlers, failures.
//! - `concurrency.rs`: a service's resizable cap on concurrent calls.
//! - `services.rs`: all services, and reconciling one with its folder.
//! - `watcher.rs`: watching the folder and reconciling what changed.

mod concurrency;
mod fair_share;
mod files;
mod read;
mod service;
mod services;
mod watcher;

pub(crate) use concurrency::CapPermit;
pub(crate) use fair_share::Slot;
pub use files::PluginFile;
pub use read::ReadError;
pub use service::{LoadFailure, LoadedHandler, Service};
pub use services::{is_valid_service_name, PluginError, Services};
pub(crate) use watcher::{watch, PluginWatcher};
