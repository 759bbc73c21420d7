//! The on-disk cache of compiled handlers.
//!
//! A compiled component is stored under a key made of the SHA-256 of the
//! `.wasm` bytes and the engine's compatibility hash (wasmtime version, target
//! and every setting that changes the machine code) with the revision of the
//! core-module wrapping, so a restart with
//! unchanged plugins does not recompile, and an engine upgrade or a settings
//! change never loads a stale artefact. Entries are written to a temporary file
//! of their own (a name no other writer uses, created exclusively) and renamed,
//! so a crash never leaves a half-written entry under a real key, and two
//! services compiling the same bytes at once never write into each other's
//! file.
//!
//! Native code is loaded from this folder without further checks, so the
//! folder must be the gateway's own: [`CompileCache::open`] refuses one that
//! is a link, is owned by another user, or that the group or others may
//! write to (a new folder is created private, mode 0700).
//!
//! Eviction: at start-up, entries not used for [`MAX_IDLE`] are deleted; using
//! an entry refreshes its modification time; after each write, the least
//! recently used entries are deleted until the folder holds at most its size
//! bound.

use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Entries unused for this long are deleted at start-up.
pub const MAX_IDLE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The SHA-256 of some bytes, in lower-case hex: the content hash shown in
/// logs and `/admin/services`.
pub fn content_hash(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A folder of compiled components.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
    max_bytes: u64,
}

impl CompileCache {
    /// Opens (creating it if needed, private) the cache folder for this
    /// engine, holding at most `max_bytes` of entries, and evicts stale
    /// entries. Refuses a folder that is not safely the gateway's own.
    pub fn open(dir: &Path, engine: &Engine, max_bytes: u64) -> std::io::Result<Self> {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => return Err(error),
            _ => {}
        }
        check_owned(dir)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        // A core module is wrapped before it is compiled: a change of the
        // wrapping must not load an artefact wrapped the old way.
        super::core_module::WRAPPER_REVISION.hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        let cache = Self {
            dir: dir.to_owned(),
            engine_key,
            max_bytes,
        };
        cache.evict_stale();
        Ok(cache)
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.engine_key))
    }

    /// A cached compilation of the component with this content hash, if any.
    /// An entry that fails to load is deleted and treated as missing.
    pub fn get(&self, engine: &Engine, hash: &str) -> Option<Component> {
        let path = self.path(hash);
        if !path.exists() {
            return None;
        }
        match load(engine, &path) {
            Ok(component) => {
                // Refresh the entry's age for eviction; failure only makes it
                // older than it is.
                if let Ok(file) = std::fs::File::options().append(true).open(&path) {
                    let _ = file.set_modified(SystemTime::now());
                }
                Some(component)
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %format!("{error:#}"), "discarding unusable compile-cache entry");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a compiled component. A failure only costs a compile later;
    /// the caller logs it.
    pub fn put(&self, hash: &str, component: &Component) -> std::io::Result<()> {
        let bytes = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        let path = self.path(hash);
        let temporary = self.temporary_file(hash);
        let written = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&temporary)
            .and_then(|mut file| file.write_all(&bytes))
            .and_then(|()| std::fs::rename(&temporary, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written?;
        self.evict_over_bound();
        Ok(())
    }

    /// Deletes the least recently used entries until the folder holds at
    /// most `max_bytes` (the newest entry is kept even if it alone is
    /// larger).
    fn evict_over_bound(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let metadata = entry.metadata().ok()?;
                metadata.is_file().then(|| {
                    let used = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    (used, metadata.len(), entry.path())
                })
            })
            .collect();
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        if total <= self.max_bytes {
            return;
        }
        files.sort();
        let keep_newest = files.len().saturating_sub(1);
        for (_, len, path) in files.into_iter().take(keep_newest) {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
                tracing::debug!(path = %path.display(), "compile-cache entry evicted (size bound)");
            }
        }
    }

    /// A file name in the cache folder that no other writer uses: this
    /// process's id and a number it never hands out twice.
    fn temporary_file(&self, hash: &str) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join(format!(".{hash}.{}.{n}.tmp", std::process::id()))
    }

    fn evict_stale(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.filter_map(Result::ok) {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|modified| now.duration_since(modified).unwrap_or_default() > MAX_IDLE)
                .unwrap_or(false);
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Refuses a cache folder the gateway cannot trust with native code: a
/// link, another user's, or writable by its group or others.
fn check_owned(dir: &Path) -> std::io::Result<()> {
    let metadata = std::fs::symlink_metadata(dir)?;
    let refuse = |why: String| {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{}: {why}; the compile cache holds native code and must be the gateway's own (mode 0700)", dir.display()),
        ))
    };
    if !metadata.is_dir() {
        return refuse("not a folder (a link?)".into());
    }
    let me = rustix::process::geteuid().as_raw();
    if metadata.uid() != me {
        return refuse(format!(
            "owned by uid {}, not the gateway's uid {me}",
            metadata.uid()
        ));
    }
    if metadata.mode() & 0o022 != 0 {
        return refuse(format!(
            "writable by its group or others (mode {:o})",
            metadata.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Loads a compiled component written by [`CompileCache::put`].
#[allow(unsafe_code)]
fn load(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` trusts its input to be a compilation made by
    // a compatible engine. The cache folder belongs to the gateway, every
    // entry was written by `put` from a component this engine compiled (and
    // renamed into place only once complete), and the file name carries the
    // engine's compatibility hash; wasmtime additionally checks the header
    // and refuses artefacts of another version or configuration.
    unsafe { Component::deserialize_file(engine, path) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_MAX_BYTES: u64 = 1 << 30;

    #[test]
    fn entries_written_at_once_for_the_same_bytes_do_not_collide() {
        let engine = Engine::default();
        let wat = r#"(component (core module (func (export "f"))))"#;
        let component = Component::new(&engine, wat).unwrap();
        let dir = std::env::temp_dir().join(format!("wasmgate-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = CompileCache::open(&dir, &engine, DEFAULT_MAX_BYTES).unwrap();
        let hash = content_hash(wat.as_bytes());
        std::thread::scope(|scope| {
            let writers: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        for _ in 0..20 {
                            cache.put(&hash, &component).unwrap();
                        }
                    })
                })
                .collect();
            for writer in writers {
                writer.join().unwrap();
            }
        });
        assert!(cache.get(&engine, &hash).is_some());
        // Only the entry is left: no temporary file behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_folder_others_may_write_to_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let engine = Engine::default();
        let dir = std::env::temp_dir().join(format!("wasmgate-cache-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Created private.
        CompileCache::open(&dir, &engine, DEFAULT_MAX_BYTES).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = CompileCache::open(&dir, &engine, DEFAULT_MAX_BYTES).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("writable by its group or others (mode 777)"),
            "{error}"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        CompileCache::open(&dir, &engine, DEFAULT_MAX_BYTES).unwrap();
        // A link to a folder is refused too.
        let link = dir.with_extension("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let error = CompileCache::open(&link, &engine, DEFAULT_MAX_BYTES).unwrap_err();
        assert!(error.to_string().contains("not a folder"), "{error}");
        std::fs::remove_file(link).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_least_recently_used_entries_go_when_the_folder_is_over_its_bound() {
        let engine = Engine::default();
        let dir = std::env::temp_dir().join(format!("wasmgate-cache-lru-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let components: Vec<(String, Component)> = (0..4)
            .map(|n| {
                let wat = format!(r#"(component (core module (func (export "f{n}"))))"#);
                (
                    content_hash(wat.as_bytes()),
                    Component::new(&engine, &wat).unwrap(),
                )
            })
            .collect();
        let entry_size = components[0].1.serialize().unwrap().len() as u64;
        // Room for three entries.
        let cache = CompileCache::open(&dir, &engine, entry_size * 3 + entry_size / 2).unwrap();
        let age = |n: u64| SystemTime::now() - Duration::from_secs(1000 - n);
        for (n, (hash, component)) in components.iter().take(3).enumerate() {
            cache.put(hash, component).unwrap();
            let file = std::fs::File::options()
                .append(true)
                .open(cache.path(hash))
                .unwrap();
            file.set_modified(age(n as u64)).unwrap();
        }
        // Using the oldest makes it the most recent.
        assert!(cache.get(&engine, &components[0].0).is_some());
        cache.put(&components[3].0, &components[3].1).unwrap();
        let present: Vec<bool> = components
            .iter()
            .map(|(hash, _)| cache.path(hash).exists())
            .collect();
        assert_eq!(present, [true, false, true, true]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn content_hash_is_sha256_hex() {
        assert_eq!(
            content_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
