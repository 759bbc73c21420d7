//! Builds every handler the tests load — the example plugins under
//! `plugins/*/` and the test plugins under `tests/plugins/*/` — from source for
//! `wasm32-wasip2`, so the tests always run the handlers of this checkout.
//! Rust crates are built in one nested cargo run (the same command and
//! profile as `cargo xtask build-plugins`); hand-written `handler.wat` core
//! modules are assembled beside them, and plugins in other languages are
//! built by their own `build.sh` (see `xtask::find_script_plugins`).

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let target_dir = root.join("target").join("wasm-tests");
    let folders = [root.join("plugins"), root.join("tests").join("plugins")];

    let mut packages = Vec::new();
    for folder in &folders {
        // A new plugin folder changes the folder's listing.
        println!("cargo:rerun-if-changed={}", folder.display());
        for plugin in xtask::find_plugin_crates(folder).unwrap() {
            plugin.rerun_if_changed();
            packages.push(plugin.package);
        }
    }
    for path in [
        "guest-sdk/src",
        "guest-sdk/Cargo.toml",
        "guest-sdk/python",
        "guest-sdk/js",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    xtask::ensure_wasm_target().unwrap();
    let mut command = xtask::cargo_command();
    command
        .current_dir(&root)
        .args([
            "build",
            "--profile",
            xtask::WASM_PROFILE,
            "--target",
            xtask::WASM_TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for package in &packages {
        command.args(["-p", package]);
    }
    let status = command
        .status()
        .expect("run cargo to build the wasm handlers");
    assert!(status.success(), "building the wasm handlers failed");
    let wasm_dir = target_dir
        .join(xtask::WASM_TARGET)
        .join(xtask::WASM_PROFILE);

    // `plugins/<name>/handler.wat` becomes `<name>.wasm` beside the Rust
    // handlers (the gateway wraps core modules itself).
    for folder in &folders {
        for source in xtask::find_wat_plugins(folder).unwrap() {
            println!("cargo:rerun-if-changed={}", source.display());
            let bytes =
                wat::parse_file(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
            let name = source
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .replace('-', "_");
            std::fs::write(wasm_dir.join(format!("{name}.wasm")), bytes).unwrap();
        }
    }
    // Plugins in other languages build themselves with their `build.sh`.
    for folder in &folders {
        for dir in xtask::find_script_plugins(folder).unwrap() {
            xtask::script_plugin_rerun_if_changed(&dir).unwrap();
            let name = dir.file_name().unwrap().to_string_lossy().replace('-', "_");
            xtask::build_script_plugin(&dir, &wasm_dir.join(format!("{name}.wasm")))
                .unwrap_or_else(|e| panic!("{e:#}"));
        }
    }
    println!(
        "cargo:rustc-env=WASMGATE_TEST_WASM_DIR={}",
        wasm_dir.display()
    );
}
