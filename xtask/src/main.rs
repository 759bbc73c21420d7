//! `cargo xtask`: project chores that need more than a cargo command.
//!
//! ```text
//! cargo xtask build-plugins        # plugins/*/       -> plugins/<dir>/handler.wasm
//! cargo xtask build-plugins --skip-missing-toolchains   # what scripts/run.sh builds
//! cargo xtask build-test-plugins   # tests/plugins/*/ -> tests/plugins/<dir>/handler.wasm
//! cargo run -p xtask --features componentize -- componentize CORE.wasm OUT.wasm
//! ```
//!
//! Both build every plugin of the folder (Rust crates for `wasm32-wasip2` with
//! the `wasm` profile in one cargo run in the separate target directory
//! `target/wasm`, `handler.wat` files assembled, `build.sh` scripts run) and
//! write each artefact beside its sources; the logic lives in the library
//! (`lib.rs`), which the tests' build script uses too.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, ensure, Result};
use xtask::{Destination, Plugin};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  build-plugins        build plugins/*/ (Rust crates for wasm32-wasip2, handler.wat,
                       build.sh) into plugins/<dir>/handler.wasm
  build-plugins --skip-missing-toolchains
                       the same, skipping script plugins whose toolchain is not
                       installed (named in one line at the end)
  build-test-plugins   build tests/plugins/*/ into tests/plugins/<dir>/handler.wasm
  componentize CORE OUT
                       wrap the WASI preview-1 core module CORE into a handler
                       component OUT (needs `--features componentize`)
  help                 print this message";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let root = workspace_root();
    let target_dir = root.join("target").join("wasm");
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["build-plugins"] => build(&root.join("plugins"), &target_dir),
        ["build-plugins", "--skip-missing-toolchains"] => {
            build_available(&root.join("plugins"), &target_dir)
        }
        ["build-test-plugins"] => build(&root.join("tests").join("plugins"), &target_dir),
        ["componentize", core, out] => componentize(&root, Path::new(core), Path::new(out)),
        [] | ["help" | "-h" | "--help"] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("unknown task {:?}\n\n{USAGE}", args.join(" ")),
    }
}

fn build(plugins_dir: &Path, target_dir: &Path) -> Result<()> {
    let plugins = xtask::find_plugins(&[plugins_dir])?;
    ensure!(
        !plugins.is_empty(),
        "no plugins (folders with a Cargo.toml, a {} or a {}) in {}",
        xtask::WAT_FILE,
        xtask::BUILD_SCRIPT,
        plugins_dir.display()
    );
    let built = xtask::build_plugins(&plugins, target_dir, &Destination::BesideSources)?;
    let count = |kind: fn(&Plugin) -> bool| built.iter().filter(|b| kind(&b.plugin)).count();
    eprintln!(
        "built {} Rust plugin(s), assembled {} WAT plugin(s), built {} script plugin(s)",
        count(|plugin| matches!(plugin, Plugin::Crate(_))),
        count(|plugin| matches!(plugin, Plugin::Wat { .. })),
        count(|plugin| matches!(plugin, Plugin::Script { .. }))
    );
    Ok(())
}

fn build_available(plugins_dir: &Path, target_dir: &Path) -> Result<()> {
    let plugins = xtask::find_plugins(&[plugins_dir])?;
    let (built, skipped) =
        xtask::build_available_plugins(&plugins, target_dir, &Destination::BesideSources)?;
    eprintln!("built {} plugin(s)", built.len());
    if !skipped.is_empty() {
        let names: Vec<String> = skipped
            .iter()
            .map(|plugin| {
                plugin
                    .dir()
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        eprintln!(
            "skipped {} (their toolchains are not installed; scripts/setup.sh installs them)",
            names.join(", ")
        );
    }
    Ok(())
}

#[cfg(feature = "componentize")]
fn componentize(root: &Path, core: &Path, out: &Path) -> Result<()> {
    use anyhow::Context as _;

    let module = std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    let component = xtask::componentize(&module, &root.join("wit").join("gateway.wit"))
        .with_context(|| format!("componentizing {}", core.display()))?;
    std::fs::write(out, &component).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {} ({} bytes)", out.display(), component.len());
    Ok(())
}

#[cfg(not(feature = "componentize"))]
fn componentize(_root: &Path, _core: &Path, _out: &Path) -> Result<()> {
    bail!("componentize needs xtask built with `--features componentize`")
}

/// The workspace root: the parent of this crate's folder.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}
