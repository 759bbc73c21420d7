//! The files a service folder may hold, as one type: every place that
//! names a plugin file (loading, role fallback, failures, logs, the admin
//! route) names it through [`PluginFile`].

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

use serde::{Serialize, Serializer};

use crate::protocol::Role;

/// One file of a service folder `plugins/<service>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginFile {
    /// `service.toml`: the service's settings, all optional.
    Settings,
    /// `handler.wasm`: serves every role that has no file of its own.
    SharedHandler,
    /// `register.wasm`, `transfer.wasm`, `cleanup.wasm`, `http.wasm` or
    /// `timer.wasm`: serves one role, instead of `handler.wasm`.
    RoleHandler(Role),
}

impl PluginFile {
    /// The handler files, the shared one first.
    pub const HANDLERS: [Self; 6] = [
        Self::SharedHandler,
        Self::RoleHandler(Role::Register),
        Self::RoleHandler(Role::Transfer),
        Self::RoleHandler(Role::Cleanup),
        Self::RoleHandler(Role::Http),
        Self::RoleHandler(Role::Timer),
    ];

    /// The file name inside the service folder.
    pub fn name(self) -> &'static str {
        match self {
            Self::Settings => "service.toml",
            Self::SharedHandler => "handler.wasm",
            Self::RoleHandler(Role::Register) => "register.wasm",
            Self::RoleHandler(Role::Transfer) => "transfer.wasm",
            Self::RoleHandler(Role::Cleanup) => "cleanup.wasm",
            Self::RoleHandler(Role::Http) => "http.wasm",
            Self::RoleHandler(Role::Timer) => "timer.wasm",
        }
    }

    /// The handler files that may serve `role`, the one that wins first.
    pub fn serving(role: Role) -> [Self; 2] {
        [Self::RoleHandler(role), Self::SharedHandler]
    }

    /// The position of a handler file in [`PluginFile::HANDLERS`]; `None`
    /// for the settings file.
    pub(crate) fn handler_index(self) -> Option<usize> {
        Self::HANDLERS.iter().position(|file| *file == self)
    }
}

impl std::fmt::Display for PluginFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// As its file name (in `/admin/services`).
impl Serialize for PluginFile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// What `stat` says of a file: enough to tell that it has not changed
/// since it was last read, without reading it. A write changes the size or
/// the modification time, a replacement (rename over it) the inode, and
/// every one of them, and a change of mode or owner, the change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    device: u64,
    inode: u64,
    len: u64,
    modified_ns: i128,
    changed_ns: i128,
}

impl Fingerprint {
    /// The fingerprint of a file's metadata.
    pub fn of(metadata: &Metadata) -> Self {
        let ns = |seconds: i64, nanos: i64| i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            len: metadata.len(),
            modified_ns: ns(metadata.mtime(), metadata.mtime_nsec()),
            changed_ns: ns(metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_falls_back_to_the_shared_handler() {
        for role in Role::ALL {
            let [own, shared] = PluginFile::serving(role);
            assert_eq!(own.name(), format!("{role}.wasm"));
            assert_eq!(shared, PluginFile::SharedHandler);
            assert!(own.handler_index().is_some());
        }
        assert_eq!(PluginFile::Settings.handler_index(), None);
        assert_eq!(PluginFile::Settings.to_string(), "service.toml");
    }
}
