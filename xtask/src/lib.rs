//! Builds handler plugins. A plugins folder holds one plugin per sub-folder,
//! of one of three kinds ([`Plugin`]):
//!
//! - a Rust crate (a `Cargo.toml`), compiled for [`WASM_TARGET`] with the
//!   workspace's [`WASM_PROFILE`] profile;
//! - a hand-written core module (a [`WAT_FILE`]), assembled;
//! - a script plugin (a [`BUILD_SCRIPT`]): a handler in another language than
//!   Rust, built by its own script.
//!
//! This is the one build path of every handler: [`find_plugins`] discovers
//! the plugins of some folders, [`build_plugins`] builds them (all Rust
//! crates in one nested cargo run) and places each artefact at a
//! [`Destination`]: beside its sources as `<dir>/handler.wasm`, where the
//! gateway's example configuration looks (`cargo xtask build-plugins` and
//! `cargo xtask build-test-plugins`, see `main.rs`), or into one folder as
//! `<artefact name>.wasm` (the tests' build script). A plugin's artefact
//! name ([`Plugin::artefact_name`]) is its crate's library name for a Rust
//! crate and its folder's name otherwise, with `-` replaced by `_`:
//! `plugins/echo-wat` gives `echo_wat.wasm`. [`rerun_if_changed`] prints the
//! `cargo:rerun-if-changed` lines of a build script that builds plugins.
//!
//! A build script uses it with `xtask` as a build dependency:
//!
//! ```no_run
//! // build.rs of a crate one level below the workspace root
//! use std::path::Path;
//!
//! fn main() -> anyhow::Result<()> {
//!     let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
//!     let folders = [root.join("plugins"), root.join("tests/plugins")];
//!     let plugins = xtask::find_plugins(&folders)?;
//!     xtask::rerun_if_changed(&folders, &plugins)?;
//!     let target_dir = root.join("target/wasm-handlers");
//!     let destination = xtask::Destination::Folder(xtask::wasm_output_dir(&target_dir));
//!     xtask::build_plugins(&plugins, &target_dir, &destination)?;
//!     Ok(())
//! }
//! ```
//!
//! The nested `cargo` runs with a clean environment (no `RUSTFLAGS`, no
//! variables describing the calling build script) and its own target
//! directory, so it neither inherits the outer build's flags nor waits for
//! the outer build's lock. Build scripts of script plugins run with the same
//! clean environment.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

mod builder;
mod cargo_env;
#[cfg(feature = "componentize")]
mod componentize;
#[cfg(test)]
mod tests;

pub use builder::{build_available_plugins, build_plugins, ensure_wasm_target};
pub use cargo_env::cargo_command;
#[cfg(feature = "componentize")]
pub use componentize::componentize;

/// The target handler plugins are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// The cargo profile handlers are built with (release without debug info,
/// defined in the workspace's `Cargo.toml`).
pub const WASM_PROFILE: &str = "wasm";

/// The file name of a plugin's artefact beside its sources
/// ([`Destination::BesideSources`]).
pub const HANDLER_FILE: &str = "handler.wasm";

/// The file that makes a plugin folder a hand-written core module in the
/// WebAssembly text format.
pub const WAT_FILE: &str = "handler.wat";

/// The file that makes a plugin folder a script plugin: a handler written in
/// another language than Rust, built by its own script.
///
/// The contract of such a script: run as `bash build.sh OUTPUT` with the
/// plugin folder as working directory, it writes the handler (a component or
/// a core module) to the absolute path `OUTPUT` and exits with 0, or exits
/// with non-zero after saying why on standard error. It expects the
/// toolchains that `scripts/setup.sh` installs and, when it does not find
/// one, names it and exits with [`TOOLCHAIN_MISSING`]; it writes generated files only to `OUTPUT`'s
/// folder, to the workspace's `target/` or to the folders in
/// `GENERATED_NAMES` (e.g. `node_modules`).
pub const BUILD_SCRIPT: &str = "build.sh";

/// The exit status of a [`BUILD_SCRIPT`] whose toolchain is not installed.
pub const TOOLCHAIN_MISSING: i32 = 3;

/// The first eight bytes of a WebAssembly component (a core module has
/// version `01 00 00 00` instead).
pub const COMPONENT_MAGIC: [u8; 8] = *b"\0asm\x0d\x00\x01\x00";

/// Folders and files a script plugin's build may create inside its folder;
/// they are not sources, so they never trigger a rebuild.
const GENERATED_NAMES: &[&str] = &[
    HANDLER_FILE,
    "node_modules",
    "target",
    "__pycache__",
    "build",
];

/// A plugin crate: a plugin folder with a `Cargo.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginCrate {
    /// The crate's folder, e.g. `plugins/echo`.
    pub dir: PathBuf,
    /// The package name from its `Cargo.toml`.
    pub package: String,
    /// The library target's name, which names the built `.wasm` file.
    pub lib_name: String,
}

impl PluginCrate {
    /// Reads the crate in `dir` from its `Cargo.toml`.
    pub fn read(dir: &Path) -> Result<Self> {
        let manifest_path = dir.join("Cargo.toml");
        let manifest = fs::read_to_string(&manifest_path)
            .with_context(|| format!("reading {}", manifest_path.display()))?;
        let manifest: toml::Table = manifest
            .parse()
            .with_context(|| format!("parsing {}", manifest_path.display()))?;
        let package = manifest
            .get("package")
            .and_then(|package| package.get("name"))
            .and_then(toml::Value::as_str)
            .with_context(|| format!("{} has no package.name", manifest_path.display()))?
            .to_owned();
        let lib_name = manifest
            .get("lib")
            .and_then(|lib| lib.get("name"))
            .and_then(toml::Value::as_str)
            .map_or_else(|| package.replace('-', "_"), str::to_owned);
        Ok(Self {
            dir: dir.to_owned(),
            package,
            lib_name,
        })
    }
}

/// A handler plugin: a sub-folder of a plugins folder, of the kind the file
/// that marks it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plugin {
    /// A Rust crate (a folder with a `Cargo.toml`), built by cargo into a
    /// component.
    Crate(PluginCrate),
    /// A hand-written core module (a folder with a [`WAT_FILE`]), assembled
    /// into a binary core module (the gateway wraps core modules itself).
    Wat {
        /// The plugin's folder, e.g. `plugins/echo-wat`.
        dir: PathBuf,
    },
    /// A handler in another language (a folder with a [`BUILD_SCRIPT`]),
    /// built by that script.
    Script {
        /// The plugin's folder, e.g. `plugins/echo-js`.
        dir: PathBuf,
    },
}

impl Plugin {
    /// The plugin in `dir`, of the kind of the one marker file it holds
    /// (`Cargo.toml`, [`WAT_FILE`] or [`BUILD_SCRIPT`]); `None` when it holds
    /// none, an error when it holds several.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let markers = [
            dir.join("Cargo.toml").is_file(),
            dir.join(WAT_FILE).is_file(),
            dir.join(BUILD_SCRIPT).is_file(),
        ];
        Ok(match markers {
            [false, false, false] => None,
            [true, false, false] => Some(Self::Crate(PluginCrate::read(dir)?)),
            [false, true, false] => Some(Self::Wat {
                dir: dir.to_owned(),
            }),
            [false, false, true] => Some(Self::Script {
                dir: dir.to_owned(),
            }),
            _ => bail!(
                "{} holds more than one of Cargo.toml, {WAT_FILE} and {BUILD_SCRIPT}; \
                 a plugin folder holds one kind of plugin",
                dir.display()
            ),
        })
    }

    /// The plugin's folder.
    pub fn dir(&self) -> &Path {
        match self {
            Self::Crate(plugin) => &plugin.dir,
            Self::Wat { dir } | Self::Script { dir } => dir,
        }
    }

    /// The name of the plugin's artefact in a [`Destination::Folder`],
    /// without `.wasm`: the library name for a Rust crate, the folder's name
    /// otherwise, with `-` replaced by `_` (`echo-wat` gives `echo_wat`).
    pub fn artefact_name(&self) -> String {
        let name = match self {
            Self::Crate(plugin) => plugin.lib_name.clone(),
            Self::Wat { dir } | Self::Script { dir } => dir
                .file_name()
                .map_or_else(String::new, |name| name.to_string_lossy().into_owned()),
        };
        name.replace('-', "_")
    }

    /// Prints the `cargo:rerun-if-changed` lines for the plugin's sources:
    /// a crate's `Cargo.toml` and `src`, a [`WAT_FILE`], or every file and
    /// folder of a script plugin except generated ones.
    pub fn rerun_if_changed(&self) -> Result<()> {
        match self {
            Self::Crate(plugin) => {
                for path in ["Cargo.toml", "src"] {
                    println!("cargo:rerun-if-changed={}", plugin.dir.join(path).display());
                }
            }
            Self::Wat { dir } => {
                println!("cargo:rerun-if-changed={}", dir.join(WAT_FILE).display());
            }
            Self::Script { dir } => {
                println!("cargo:rerun-if-changed={}", dir.display());
                for entry in
                    fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?
                {
                    let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    if name.starts_with('.') || GENERATED_NAMES.contains(&name.as_ref()) {
                        continue;
                    }
                    println!("cargo:rerun-if-changed={}", entry.path().display());
                }
            }
        }
        Ok(())
    }
}

/// Where [`build_plugins`] places each plugin's artefact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Beside the plugin's sources, as `<dir>/handler.wasm` ([`HANDLER_FILE`]).
    BesideSources,
    /// Into one folder, as `<folder>/<artefact name>.wasm` (see
    /// [`Plugin::artefact_name`]).
    Folder(PathBuf),
}

impl Destination {
    /// The file `plugin`'s artefact is written to.
    pub fn path(&self, plugin: &Plugin) -> PathBuf {
        match self {
            Self::BesideSources => plugin.dir().join(HANDLER_FILE),
            Self::Folder(folder) => folder.join(format!("{}.wasm", plugin.artefact_name())),
        }
    }
}

/// A plugin that was built, and where its artefact is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltPlugin {
    /// The plugin it was built from.
    pub plugin: Plugin,
    /// The artefact, at the [`Destination`] it was built for.
    pub wasm: PathBuf,
}

/// The plugins in `folders`: every sub-folder that holds a `Cargo.toml`, a
/// [`WAT_FILE`] or a [`BUILD_SCRIPT`] (see [`Plugin::read`]), in the order of
/// `folders`, each folder's sorted by name.
///
/// Fails when two plugins would have the same artefact name, since they
/// would overwrite each other in a [`Destination::Folder`].
pub fn find_plugins<P: AsRef<Path>>(folders: &[P]) -> Result<Vec<Plugin>> {
    let mut plugins = Vec::new();
    for folder in folders {
        let folder = folder.as_ref();
        let mut dirs = Vec::new();
        for entry in fs::read_dir(folder)
            .with_context(|| format!("listing plugin folder {}", folder.display()))?
        {
            let path = entry
                .with_context(|| format!("listing plugin folder {}", folder.display()))?
                .path();
            if path.is_dir() {
                dirs.push(path);
            }
        }
        dirs.sort();
        for dir in dirs {
            plugins.extend(Plugin::read(&dir)?);
        }
    }
    let mut names: BTreeMap<String, &Path> = BTreeMap::new();
    for plugin in &plugins {
        if let Some(other) = names.insert(plugin.artefact_name(), plugin.dir()) {
            bail!(
                "the plugins {} and {} have the same artefact name {}",
                other.display(),
                plugin.dir().display(),
                plugin.artefact_name()
            );
        }
    }
    Ok(plugins)
}

/// Prints the `cargo:rerun-if-changed` lines of a build script that builds
/// `plugins`, found in `folders`: each folder (a new plugin changes its
/// listing) and each plugin's sources ([`Plugin::rerun_if_changed`]).
pub fn rerun_if_changed<P: AsRef<Path>>(folders: &[P], plugins: &[Plugin]) -> Result<()> {
    for folder in folders {
        println!("cargo:rerun-if-changed={}", folder.as_ref().display());
    }
    for plugin in plugins {
        plugin.rerun_if_changed()?;
    }
    Ok(())
}

/// The folder cargo writes the components of plugin crates to, in the
/// target directory `target_dir`: `<target_dir>/wasm32-wasip2/wasm`.
pub fn wasm_output_dir(target_dir: &Path) -> PathBuf {
    target_dir.join(WASM_TARGET).join(WASM_PROFILE)
}
