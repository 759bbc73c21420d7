//! Building plugins: [`build_plugins`] with its steps for each kind of
//! plugin (one cargo run for the Rust crates, assembling WAT, running build
//! scripts), and [`ensure_wasm_target`].

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context as _, Result};

use crate::cargo_env::{cargo_command, remove_leaking_variables};
use crate::{
    wasm_output_dir, BuiltPlugin, Destination, Plugin, PluginCrate, BUILD_SCRIPT, COMPONENT_MAGIC,
    WASM_PROFILE, WASM_TARGET, WAT_FILE,
};

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

/// Like [`build_plugins`], except that a script plugin whose toolchain is
/// not installed (its [`BUILD_SCRIPT`] exits with
/// [`TOOLCHAIN_MISSING`](crate::TOOLCHAIN_MISSING)) is skipped rather than
/// failing the build: what `scripts/run.sh` builds on a machine with only
/// Rust. Returns what was built and what was skipped. A script's output is
/// shown once it ends (and not at all when it was skipped).
pub fn build_available_plugins(
    plugins: &[Plugin],
    target_dir: &Path,
    destination: &Destination,
) -> Result<(Vec<BuiltPlugin>, Vec<Plugin>)> {
    let (scripts, others): (Vec<Plugin>, Vec<Plugin>) = plugins
        .iter()
        .cloned()
        .partition(|plugin| matches!(plugin, Plugin::Script { .. }));
    let mut built = build_plugins(&others, target_dir, destination)?;
    let mut skipped = Vec::new();
    for plugin in scripts {
        let wasm = destination.path(&plugin);
        let output =
            std::path::absolute(&wasm).with_context(|| format!("resolving {}", wasm.display()))?;
        let dir = plugin.dir().to_owned();
        let mut command = Command::new("bash");
        command
            .arg(BUILD_SCRIPT)
            .arg(&output)
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        remove_leaking_variables(&mut command);
        let run = command
            .output()
            .with_context(|| format!("running {BUILD_SCRIPT} in {}", dir.display()))?;
        if run.status.code() == Some(crate::TOOLCHAIN_MISSING) {
            skipped.push(plugin);
            continue;
        }
        eprint!("{}", String::from_utf8_lossy(&run.stdout));
        eprint!("{}", String::from_utf8_lossy(&run.stderr));
        ensure!(
            run.status.success(),
            "building script plugin {} failed ({})",
            dir.display(),
            run.status
        );
        ensure!(
            fs::read(&output).is_ok_and(|bytes| bytes.starts_with(b"\0asm")),
            "{}/{BUILD_SCRIPT} wrote no WebAssembly to {}",
            dir.display(),
            output.display()
        );
        built.push(BuiltPlugin { plugin, wasm });
    }
    Ok((built, skipped))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::find_plugins;
    use crate::tests::{temp_dir, write, EMPTY_MODULE_SCRIPT};
    use crate::HANDLER_FILE;

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
}
