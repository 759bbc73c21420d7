//! `cargo xtask`: project chores that need more than a cargo command.
//!
//! ```text
//! cargo xtask build-plugins        # plugins/*/       -> plugins/<dir>/handler.wasm
//! cargo xtask build-test-plugins   # tests/plugins/*/ -> tests/plugins/<dir>/handler.wasm
//! ```
//!
//! Both build for `wasm32-wasip2` with the `wasm` profile, in the separate target
//! directory `target/wasm`; the logic lives in the library (`lib.rs`) so that
//! build scripts can use it too.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  build-plugins        build plugins/*/ for wasm32-wasip2 into plugins/<dir>/handler.wasm
  build-test-plugins   build tests/plugins/*/ into tests/plugins/<dir>/handler.wasm
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
        ["build-test-plugins"] => build(&root.join("tests").join("plugins"), &target_dir),
        [] | ["help" | "-h" | "--help"] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("unknown task {:?}\n\n{USAGE}", args.join(" ")),
    }
}

fn build(plugins_dir: &Path, target_dir: &Path) -> Result<()> {
    let built = xtask::build_plugins(plugins_dir, target_dir)?;
    let assembled = xtask::assemble_wat_plugins(plugins_dir)?;
    let scripted = xtask::build_script_plugins(plugins_dir)?;
    eprintln!(
        "built {} Rust plugin(s), assembled {} WAT plugin(s), built {} script plugin(s)",
        built.len(),
        assembled.len(),
        scripted.len()
    );
    Ok(())
}

/// The workspace root: the parent of this crate's folder.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}
