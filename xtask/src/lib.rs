//! Builds handler plugins: every crate in a plugins folder is compiled for
//! `wasm32-wasip2` with the workspace's `wasm` profile and its component is
//! copied next to its sources as `handler.wasm`, where the gateway looks for
//! it. The tests' build script uses the same pieces ([`cargo_command`],
//! [`find_plugin_crates`], [`find_wat_plugins`], [`ensure_wasm_target`]).
//!
//! `cargo xtask build-plugins` and `cargo xtask build-test-plugins` (see
//! `main.rs`) are thin wrappers around [`build_plugins`]. A build script can
//! call it too, with `xtask` as a build dependency:
//!
//! ```no_run
//! // build.rs of a crate one level below the workspace root
//! use std::path::Path;
//!
//! fn main() -> anyhow::Result<()> {
//!     let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
//!     let plugins = xtask::build_plugins(&root.join("tests/plugins"), &root.join("target/wasm"))?;
//!     for plugin in &plugins {
//!         plugin.source.rerun_if_changed();
//!     }
//!     println!("cargo:rerun-if-changed={}", root.join("guest-sdk").display());
//!     Ok(())
//! }
//! ```
//!
//! The nested `cargo` runs with a clean environment (no `RUSTFLAGS`, no
//! variables describing the calling build script) and its own target
//! directory, so it neither inherits the outer build's flags nor waits for
//! the outer build's lock.

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

/// The file name a built plugin is copied to, in its crate's folder.
pub const HANDLER_FILE: &str = "handler.wasm";

/// The first eight bytes of a WebAssembly component (a core module has
/// version `01 00 00 00` instead).
pub const COMPONENT_MAGIC: [u8; 8] = *b"\0asm\x0d\x00\x01\x00";

/// A plugin crate found in a plugins folder.
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

    /// Where the plugin's component is copied: `<dir>/handler.wasm`.
    pub fn handler_path(&self) -> PathBuf {
        self.dir.join(HANDLER_FILE)
    }

    /// Prints the `cargo:rerun-if-changed` lines for this crate's sources, for
    /// a build script that builds it.
    pub fn rerun_if_changed(&self) {
        for path in ["Cargo.toml", "src"] {
            println!("cargo:rerun-if-changed={}", self.dir.join(path).display());
        }
    }
}

/// A plugin that was built and copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltPlugin {
    /// The crate it was built from.
    pub source: PluginCrate,
    /// The copied component, `<dir>/handler.wasm`.
    pub wasm: PathBuf,
}

/// The plugin crates in `plugins_dir`: its sub-folders that hold a
/// `Cargo.toml`, sorted by folder name.
pub fn find_plugin_crates(plugins_dir: &Path) -> Result<Vec<PluginCrate>> {
    let entries = fs::read_dir(plugins_dir)
        .with_context(|| format!("listing plugin folder {}", plugins_dir.display()))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing plugin folder {}", plugins_dir.display()))?
            .path();
        if path.join("Cargo.toml").is_file() {
            dirs.push(path);
        }
    }
    dirs.sort();
    dirs.iter().map(|dir| PluginCrate::read(dir)).collect()
}

/// Builds every plugin crate in `plugins_dir` for [`WASM_TARGET`] with
/// [`WASM_PROFILE`], with `target_dir` as cargo's target directory, and copies each
/// component to `<crate dir>/handler.wasm`.
///
/// Installs the target first if rustup lacks it. Progress goes to standard
/// error, cargo's output too, so a build script's standard output stays free
/// for its `cargo:` lines.
pub fn build_plugins(plugins_dir: &Path, target_dir: &Path) -> Result<Vec<BuiltPlugin>> {
    let crates = find_plugin_crates(plugins_dir)?;
    ensure!(
        !crates.is_empty(),
        "no plugin crates (folders with a Cargo.toml) in {}",
        plugins_dir.display()
    );
    ensure_wasm_target()?;
    crates
        .into_iter()
        .map(|plugin| build_plugin(plugin, target_dir))
        .collect()
}

/// Assembles every `<dir>/handler.wat` in `plugins_dir` (hand-written core
/// modules) into `<dir>/handler.wasm`; returns the files written.
pub fn assemble_wat_plugins(plugins_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for source in find_wat_plugins(plugins_dir)? {
        let dir = source.parent().expect("a handler.wat lies in a folder");
        let bytes =
            wat::parse_file(&source).with_context(|| format!("assembling {}", source.display()))?;
        let output = dir.join("handler.wasm");
        std::fs::write(&output, bytes).with_context(|| format!("writing {}", output.display()))?;
        eprintln!("wrote {} (core module)", output.display());
        written.push(output);
    }
    Ok(written)
}

/// The hand-written core modules in `plugins_dir`: the `handler.wat` files of
/// its sub-folders, sorted by folder name.
pub fn find_wat_plugins(plugins_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut sources: Vec<PathBuf> = fs::read_dir(plugins_dir)
        .with_context(|| format!("listing plugin folder {}", plugins_dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("handler.wat")))
        .filter(|source| source.is_file())
        .collect();
    sources.sort();
    Ok(sources)
}

/// The file that makes a plugin folder a script plugin: a handler written in
/// another language than Rust, built by its own script.
pub const BUILD_SCRIPT: &str = "build.sh";

/// Folders and files a script plugin's build may create inside its folder;
/// they are not sources, so they never trigger a rebuild.
const GENERATED_NAMES: &[&str] = &[
    HANDLER_FILE,
    "node_modules",
    "target",
    "__pycache__",
    "build",
];

/// The script plugins in `plugins_dir`: its sub-folders that hold a
/// [`BUILD_SCRIPT`], sorted by folder name.
///
/// The contract of such a script: run as `bash build.sh OUTPUT` with the
/// plugin folder as working directory, it writes the handler (a component or
/// a core module) to the absolute path `OUTPUT` and exits with 0, or exits
/// with non-zero after saying why on standard error. It expects the
/// toolchains that `scripts/setup.sh` installs and names the missing one
/// when it does not find it; it writes generated files only to `OUTPUT`'s
/// folder, to the workspace's `target/` or to the folders in
/// `GENERATED_NAMES` (e.g. `node_modules`).
pub fn find_script_plugins(plugins_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(plugins_dir)
        .with_context(|| format!("listing plugin folder {}", plugins_dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|dir| dir.join(BUILD_SCRIPT).is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Runs the [`BUILD_SCRIPT`] of the script plugin in `dir`, which writes its
/// handler to `output`, and checks that a WebAssembly file came out.
pub fn build_script_plugin(dir: &Path, output: &Path) -> Result<()> {
    let output =
        std::path::absolute(output).with_context(|| format!("resolving {}", output.display()))?;
    if let Some(parent) = output.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
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

/// Builds every script plugin in `plugins_dir` into `<dir>/handler.wasm`;
/// returns the files written.
pub fn build_script_plugins(plugins_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for dir in find_script_plugins(plugins_dir)? {
        let output = dir.join(HANDLER_FILE);
        build_script_plugin(&dir, &output)?;
        written.push(output);
    }
    Ok(written)
}

/// Prints `cargo:rerun-if-changed` lines for the sources of the script
/// plugin in `dir`: every file and folder in it except generated ones.
pub fn script_plugin_rerun_if_changed(dir: &Path) -> Result<()> {
    println!("cargo:rerun-if-changed={}", dir.display());
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || GENERATED_NAMES.contains(&name.as_ref()) {
            continue;
        }
        println!("cargo:rerun-if-changed={}", entry.path().display());
    }
    Ok(())
}

/// Builds one plugin crate and copies its component to `<dir>/handler.wasm`.
/// Expects [`WASM_TARGET`] to be installed (see [`ensure_wasm_target`]).
pub fn build_plugin(plugin: PluginCrate, target_dir: &Path) -> Result<BuiltPlugin> {
    eprintln!(
        "building plugin {} ({}) for {WASM_TARGET}",
        plugin.dir.display(),
        plugin.package
    );
    let mut cargo = cargo_command();
    cargo
        .arg("build")
        .args(["--profile", WASM_PROFILE])
        .args(["--target", WASM_TARGET])
        .arg("--manifest-path")
        .arg(plugin.dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .stdout(Stdio::from(std::io::stderr()));
    let status = cargo
        .status()
        .with_context(|| format!("running {cargo:?}"))?;
    ensure!(
        status.success(),
        "building plugin {} failed ({status})",
        plugin.dir.display()
    );

    let built = target_dir
        .join(WASM_TARGET)
        .join(WASM_PROFILE)
        .join(format!("{}.wasm", plugin.lib_name));
    let wasm = plugin.handler_path();
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
    fs::write(&wasm, &bytes).with_context(|| format!("writing {}", wasm.display()))?;
    eprintln!("wrote {} ({} bytes)", wasm.display(), bytes.len());
    Ok(BuiltPlugin {
        source: plugin,
        wasm,
    })
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

    #[test]
    fn finds_crates_and_names_their_wasm() {
        let dir = temp_dir("find");
        fs::create_dir_all(dir.join("b-plugin")).unwrap();
        fs::write(
            dir.join("b-plugin/Cargo.toml"),
            "[package]\nname = \"b-plugin\"\n",
        )
        .unwrap();
        fs::create_dir_all(dir.join("a")).unwrap();
        fs::write(
            dir.join("a/Cargo.toml"),
            "[package]\nname = \"a\"\n[lib]\nname = \"custom\"\n",
        )
        .unwrap();
        fs::create_dir_all(dir.join("not-a-crate")).unwrap();

        let crates = find_plugin_crates(&dir).unwrap();
        let names: Vec<_> = crates
            .iter()
            .map(|c| (c.package.as_str(), c.lib_name.as_str()))
            .collect();
        assert_eq!(names, [("a", "custom"), ("b-plugin", "b_plugin")]);
        assert_eq!(crates[1].handler_path(), dir.join("b-plugin/handler.wasm"));
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
}
