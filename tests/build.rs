//! Builds every handler the tests load — the example plugins under
//! `plugins/*/` and the test plugins under `tests/plugins/*/` — from source,
//! so the tests always run the handlers of this checkout. xtask's build path
//! does it all (the same as `cargo xtask build-plugins`: Rust crates in one
//! nested cargo run, `handler.wat` assembled, `build.sh` scripts run); the
//! artefacts land in one folder as `<artefact name>.wasm`, the folder
//! `util::wasm` reads from `WASMGATE_TEST_WASM_DIR`.

use std::fmt::Display;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let target_dir = root.join("target").join("wasm-tests");
    let folders = [root.join("plugins"), root.join("tests").join("plugins")];

    let plugins = xtask::find_plugins(&folders).unwrap_or_else(fail);
    xtask::rerun_if_changed(&folders, &plugins).unwrap_or_else(fail);
    // What the plugins build with besides their own sources.
    for path in [
        "guest-sdk/src",
        "guest-sdk/Cargo.toml",
        "guest-sdk/wit",
        "guest-sdk/python",
        "guest-sdk/js",
        "guest-sdk/c",
        "guest-sdk/zig",
        "guest-sdk/go",
        "guest-sdk/assemblyscript",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    // Cargo's own output folder for the Rust crates, so their components
    // stay where cargo writes them.
    let wasm_dir = xtask::wasm_output_dir(&target_dir);
    xtask::build_plugins(
        &plugins,
        &target_dir,
        &xtask::Destination::Folder(wasm_dir.clone()),
    )
    .unwrap_or_else(fail);
    println!(
        "cargo:rustc-env=WASMGATE_TEST_WASM_DIR={}",
        wasm_dir.display()
    );
}

/// Fails the build with `error` and its causes.
fn fail<T>(error: impl Display) -> T {
    panic!("{error:#}")
}
