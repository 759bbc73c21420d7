//! The on-disk cache of compiled handlers.
//!
//! A compiled component is stored under a key made of the SHA-256 of the
//! `.wasm` bytes and the engine's compatibility hash (wasmtime version, target
//! and every setting that changes the machine code), so a restart with
//! unchanged plugins does not recompile, and an engine upgrade or a settings
//! change never loads a stale artefact. Entries are written to a temporary file
//! of their own (a name no other writer uses, created exclusively) and renamed,
//! so a crash never leaves a half-written entry under a real key, and two
//! services compiling the same bytes at once never write into each other's
//! file.
//!
//! Eviction: at start-up, entries not used for [`MAX_IDLE`] are deleted; using
//! an entry refreshes its modification time.

use std::hash::{Hash, Hasher};
use std::io::Write as _;
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
}

impl CompileCache {
    /// Opens (creating it if needed) the cache folder for this engine and
    /// evicts stale entries.
    pub fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        let cache = Self {
            dir: dir.to_owned(),
            engine_key,
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
        written
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

    #[test]
    fn entries_written_at_once_for_the_same_bytes_do_not_collide() {
        let engine = Engine::default();
        let wat = r#"(component (core module (func (export "f"))))"#;
        let component = Component::new(&engine, wat).unwrap();
        let dir = std::env::temp_dir().join(format!("wasmgate-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = CompileCache::open(&dir, &engine).unwrap();
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
    fn content_hash_is_sha256_hex() {
        assert_eq!(
            content_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
