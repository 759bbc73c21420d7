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
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context as _, Result};

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
/// toolchains that `scripts/setup.sh` installs and names the missing one
/// when it does not find it; it writes generated files only to `OUTPUT`'s
/// folder, to the workspace's `target/` or to the folders in
/// `GENERATED_NAMES` (e.g. `node_modules`).
pub const BUILD_SCRIPT: &str = "build.sh";

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

/// Builds `plugins` and writes each artefact to `destination`; returns them
/// in the order of `plugins`.
///
/// The Rust crates are built in one cargo run (with a `-p` each, so they
/// must belong to one workspace) for [`WASM_TARGET`] with [`WASM_PROFILE`],
/// with `target_dir` as cargo's target directory; their components are then
/// copied from [`wasm_output_dir`] unless that is where they go already. The
/// rustup target is installed first if missing. WAT plugins are assembled,
/// and script plugins' [`BUILD_SCRIPT`]s run. Progress goes to standard
/// error, cargo's and the scripts' output too, so a build script's standard
/// output stays free for its `cargo:` lines.
pub fn build_plugins(
    plugins: &[Plugin],
    target_dir: &Path,
    destination: &Destination,
) -> Result<Vec<BuiltPlugin>> {
    let crates: Vec<&PluginCrate> = plugins
        .iter()
        .filter_map(|plugin| match plugin {
            Plugin::Crate(plugin) => Some(plugin),
            _ => None,
        })
        .collect();
    build_crates(&crates, target_dir)?;
    plugins
        .iter()
        .map(|plugin| {
            let wasm = destination.path(plugin);
            if let Some(parent) = wasm.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            match plugin {
                Plugin::Crate(source) => place_component(source, target_dir, &wasm)?,
                Plugin::Wat { dir } => assemble_wat(dir, &wasm)?,
                Plugin::Script { dir } => run_build_script(dir, &wasm)?,
            }
            Ok(BuiltPlugin {
                plugin: plugin.clone(),
                wasm,
            })
        })
        .collect()
}

/// Builds `crates` in one cargo run; nothing when there are none.
fn build_crates(crates: &[&PluginCrate], target_dir: &Path) -> Result<()> {
    let Some(first) = crates.first() else {
        return Ok(());
    };
    ensure_wasm_target()?;
    let packages: Vec<&str> = crates.iter().map(|c| c.package.as_str()).collect();
    eprintln!(
        "building plugin crates {} for {WASM_TARGET}",
        packages.join(", ")
    );
    let mut cargo = cargo_command();
    cargo
        .arg("build")
        .args(["--profile", WASM_PROFILE])
        .args(["--target", WASM_TARGET])
        .arg("--manifest-path")
        .arg(first.dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .stdout(Stdio::from(std::io::stderr()));
    for package in &packages {
        cargo.args(["-p", package]);
    }
    let status = cargo
        .status()
        .with_context(|| format!("running {cargo:?}"))?;
    ensure!(
        status.success(),
        "building plugin crates {} failed ({status})",
        packages.join(", ")
    );
    Ok(())
}

/// Checks the component cargo built for `plugin` in `target_dir` and copies
/// it to `wasm`, unless it is that file already.
fn place_component(plugin: &PluginCrate, target_dir: &Path, wasm: &Path) -> Result<()> {
    let built = wasm_output_dir(target_dir).join(format!("{}.wasm", plugin.lib_name));
    let bytes = fs::read(&built).with_context(|| {
        format!(
            "reading {} (is {} a cdylib?)",
            built.display(),
            plugin.package
        )
    })?;
    ensure!(
        bytes.starts_with(&COMPONENT_MAGIC),
        "{} is not a WebAssembly component",
        built.display()
    );
    if same_file(&built, wasm) {
        eprintln!("built {} ({} bytes)", wasm.display(), bytes.len());
    } else {
        fs::write(wasm, &bytes).with_context(|| format!("writing {}", wasm.display()))?;
        eprintln!("wrote {} ({} bytes)", wasm.display(), bytes.len());
    }
    Ok(())
}

/// Whether `a` and `b` name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Assembles the [`WAT_FILE`] in `dir` into the core module `wasm`.
fn assemble_wat(dir: &Path, wasm: &Path) -> Result<()> {
    let source = dir.join(WAT_FILE);
    let bytes =
        wat::parse_file(&source).with_context(|| format!("assembling {}", source.display()))?;
    fs::write(wasm, bytes).with_context(|| format!("writing {}", wasm.display()))?;
    eprintln!("wrote {} (core module)", wasm.display());
    Ok(())
}

/// Runs the [`BUILD_SCRIPT`] of the script plugin in `dir`, which writes its
/// handler to `output`, and checks that a WebAssembly file came out.
fn run_build_script(dir: &Path, output: &Path) -> Result<()> {
    let output =
        std::path::absolute(output).with_context(|| format!("resolving {}", output.display()))?;
    let _ = fs::remove_file(&output);
    eprintln!("building script plugin {}", dir.display());
    let mut command = Command::new("bash");
    command
        .arg(BUILD_SCRIPT)
        .arg(&output)
        .current_dir(dir)
        .stdout(Stdio::from(std::io::stderr()));
    remove_leaking_variables(&mut command);
    let status = command
        .status()
        .with_context(|| format!("running {BUILD_SCRIPT} in {}", dir.display()))?;
    ensure!(
        status.success(),
        "building script plugin {} failed ({status})",
        dir.display()
    );
    let bytes = fs::read(&output).with_context(|| {
        format!(
            "{}/{BUILD_SCRIPT} succeeded but wrote no {}",
            dir.display(),
            output.display()
        )
    })?;
    ensure!(
        bytes.starts_with(b"\0asm"),
        "{}/{BUILD_SCRIPT} wrote {}, which is not WebAssembly",
        dir.display(),
        output.display()
    );
    eprintln!("wrote {} ({} bytes)", output.display(), bytes.len());
    Ok(())
}

/// Installs [`WASM_TARGET`] with `rustup target add` unless it is installed.
///
/// Without rustup (a toolchain from elsewhere) nothing is checked; cargo then
/// reports a missing target itself.
pub fn ensure_wasm_target() -> Result<()> {
    let installed = match Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stderr(Stdio::inherit())
        .output()
    {
        Ok(output) if output.status.success() => output.stdout,
        Ok(output) => bail!(
            "`rustup target list --installed` failed ({})",
            output.status
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error).context("running rustup"),
    };
    if String::from_utf8_lossy(&installed)
        .lines()
        .any(|line| line.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    eprintln!("installing the {WASM_TARGET} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .context("running rustup target add")?;
    ensure!(
        status.success(),
        "`rustup target add {WASM_TARGET}` failed ({status})"
    );
    Ok(())
}

/// Variables a calling cargo sets that must not reach the nested build: flags
/// meant for the outer target, the clippy driver, and the description of the
/// build script that is running.
const LEAKING_VARIABLES: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
    "RUSTC_LINKER",
];

/// Prefixes of per-package variables a calling cargo sets for a build script.
const LEAKING_PREFIXES: &[&str] = &["CARGO_FEATURE_", "CARGO_CFG_", "CARGO_PKG_", "DEP_"];

/// A `cargo` command with an environment cleaned of what a calling cargo sets
/// (flags for the outer target, the build script's own description), for a
/// cargo run from inside another build. Uses the
/// cargo that runs us (`$CARGO`) when there is one.
pub fn cargo_command() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    remove_leaking_variables(&mut command);
    command
}

/// Removes from `command`'s environment what a calling cargo set for its own
/// build ([`LEAKING_VARIABLES`], [`LEAKING_PREFIXES`]).
fn remove_leaking_variables(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if LEAKING_VARIABLES.contains(&name)
            || LEAKING_PREFIXES
                .iter()
                .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(name);
        }
    }
}

/// Turns a core module built against WASI preview 1 (e.g. C with wasi-libc)
/// into a component of the `wasmgate:gateway/handler` world: embeds the world
/// from `wit_file`, then encodes the component with the WASI preview-1
/// reactor adapter, so `wasi_snapshot_preview1` imports become WASI 0.2
/// imports the gateway provides. The module must follow the canonical ABI
/// of the world (see `docs/languages/wat.md`).
#[cfg(feature = "componentize")]
pub fn componentize(core_module: &[u8], wit_file: &Path) -> Result<Vec<u8>> {
    use wit_component::{ComponentEncoder, StringEncoding};

    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_path(wit_file)
        .with_context(|| format!("parsing {}", wit_file.display()))?;
    let world = resolve.select_world(&[package], Some("handler"))?;
    let mut module = core_module.to_vec();
    wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)?;
    ComponentEncoder::default()
        .validate(true)
        .module(&module)?
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Writes `contents` to `path`, creating its folder.
    fn write(path: &Path, contents: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    /// A script plugin's build script that writes the smallest core module.
    const EMPTY_MODULE_SCRIPT: &str = "printf '\\0asm\\1\\0\\0\\0' > \"$1\"\n";

    #[test]
    fn finds_plugins_of_every_kind_and_names_their_artefacts() {
        let dir = temp_dir("find");
        let (examples, tests) = (dir.join("plugins"), dir.join("tests-plugins"));
        write(
            &examples.join("my-crate/Cargo.toml"),
            "[package]\nname = \"my-crate\"\n",
        );
        write(
            &examples.join("renamed/Cargo.toml"),
            "[package]\nname = \"renamed\"\n[lib]\nname = \"custom\"\n",
        );
        write(&examples.join("echo-wat/handler.wat"), "(module)");
        write(&examples.join("echo-js/build.sh"), EMPTY_MODULE_SCRIPT);
        write(&examples.join("echo-js/app.js"), "");
        fs::create_dir_all(examples.join("not-a-plugin")).unwrap();
        write(&examples.join("README.md"), "");
        write(
            &tests.join("probe/Cargo.toml"),
            "[package]\nname = \"probe\"\n",
        );

        let plugins = find_plugins(&[&examples, &tests]).unwrap();
        let found: Vec<_> = plugins
            .iter()
            .map(|plugin| {
                let kind = match plugin {
                    Plugin::Crate(_) => "crate",
                    Plugin::Wat { .. } => "wat",
                    Plugin::Script { .. } => "script",
                };
                (kind, plugin.artefact_name())
            })
            .collect();
        let expected = [
            ("script", "echo_js"),
            ("wat", "echo_wat"),
            ("crate", "my_crate"),
            ("crate", "custom"),
            ("crate", "probe"),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(kind, name)| (*kind, (*name).to_owned()))
            .collect();
        assert_eq!(found, expected);
        let Plugin::Crate(renamed) = &plugins[3] else {
            panic!("{:?} is not a crate", plugins[3]);
        };
        assert_eq!(renamed.package, "renamed");
        assert_eq!(plugins[0].dir(), examples.join("echo-js"));

        let out = dir.join("out");
        assert_eq!(
            Destination::Folder(out.clone()).path(&plugins[1]),
            out.join("echo_wat.wasm")
        );
        assert_eq!(
            Destination::Folder(out.clone()).path(&plugins[2]),
            out.join("my_crate.wasm")
        );
        assert_eq!(
            Destination::BesideSources.path(&plugins[2]),
            examples.join("my-crate/handler.wasm")
        );
        assert_eq!(
            Destination::BesideSources.path(&plugins[3]),
            examples.join("renamed/handler.wasm")
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn builds_wat_and_script_plugins_to_either_destination() {
        let dir = temp_dir("build");
        let folder = dir.join("plugins");
        write(&folder.join("echo-wat/handler.wat"), "(module)");
        write(&folder.join("echo-sh/build.sh"), EMPTY_MODULE_SCRIPT);
        let plugins = find_plugins(&[&folder]).unwrap();
        // Without plugin crates, no cargo runs, so the target directory
        // stays unused.
        let target_dir = dir.join("target");

        let out = dir.join("out");
        let built =
            build_plugins(&plugins, &target_dir, &Destination::Folder(out.clone())).unwrap();
        let written: Vec<_> = built.iter().map(|built| built.wasm.clone()).collect();
        assert_eq!(
            written,
            [out.join("echo_sh.wasm"), out.join("echo_wat.wasm")]
        );
        for wasm in &written {
            assert!(fs::read(wasm).unwrap().starts_with(b"\0asm\x01\0\0\0"));
        }

        let built = build_plugins(&plugins, &target_dir, &Destination::BesideSources).unwrap();
        for built in &built {
            assert_eq!(built.wasm, built.plugin.dir().join(HANDLER_FILE));
            assert!(fs::read(&built.wasm).unwrap().starts_with(b"\0asm"));
        }
        assert!(!target_dir.exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_folder_with_two_kinds_of_plugin_is_an_error() {
        let dir = temp_dir("two-kinds");
        write(&dir.join("both/handler.wat"), "(module)");
        write(&dir.join("both/build.sh"), EMPTY_MODULE_SCRIPT);
        let error = find_plugins(&[&dir]).unwrap_err();
        assert!(error.to_string().contains("more than one"), "{error}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn plugins_with_the_same_artefact_name_are_an_error() {
        let dir = temp_dir("same-name");
        write(&dir.join("a/echo-wat/handler.wat"), "(module)");
        write(&dir.join("b/echo_wat/build.sh"), EMPTY_MODULE_SCRIPT);
        let error = find_plugins(&[dir.join("a"), dir.join("b")]).unwrap_err();
        assert!(
            error.to_string().contains("same artefact name echo_wat"),
            "{error}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_manifest_without_a_name_is_an_error() {
        let dir = temp_dir("nameless");
        fs::write(dir.join("Cargo.toml"), "[package]\n").unwrap();
        let error = PluginCrate::read(&dir).unwrap_err();
        assert!(error.to_string().contains("no package.name"), "{error}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn nested_cargo_drops_outer_flags() {
        let command = cargo_command();
        let removed: Vec<_> = command
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_owned())
            .collect();
        for (name, _) in std::env::vars_os() {
            if name == "CARGO_PKG_NAME" || name == "CARGO_MANIFEST_DIR" {
                assert!(removed.contains(&name), "{name:?} leaks");
            }
        }
    }

    /// The files under `dir`, as paths relative to it, sorted.
    fn files_under(dir: &Path) -> Vec<PathBuf> {
        fn walk(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) {
            for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(root, &path, files);
                } else {
                    files.push(path.strip_prefix(root).unwrap().to_owned());
                }
            }
        }
        let mut files = Vec::new();
        walk(dir, dir, &mut files);
        files.sort();
        files
    }

    /// The guest SDK generates its bindings from its own copy of the WIT, so
    /// that a packaged `wasmgate-guest` carries it; `wit/` at the workspace
    /// root stays the source of truth.
    #[test]
    fn guest_sdk_wit_is_a_copy_of_the_workspace_wit() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let (original, copy) = (root.join("wit"), root.join("guest-sdk").join("wit"));
        let files = files_under(&original);
        assert!(!files.is_empty(), "{} holds no files", original.display());
        assert_eq!(
            files_under(&copy),
            files,
            "guest-sdk/wit/ must hold the same files as wit/; replace it with a copy: \
             rm -r guest-sdk/wit && cp -r wit guest-sdk/wit"
        );
        for file in &files {
            let (from, to) = (original.join(file), copy.join(file));
            assert!(
                fs::read(&from).unwrap() == fs::read(&to).unwrap(),
                "{} differs from {}, its source of truth; copy it: cp wit/{} guest-sdk/wit/{}",
                to.display(),
                from.display(),
                file.display(),
                file.display()
            );
        }
    }
}
