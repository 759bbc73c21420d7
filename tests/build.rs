//! Builds every handler the tests load — the example plugins under
//! `plugins/*/` and the test plugins under `tests/plugins/*/` — from source for
//! `wasm32-wasip2`, so the tests always run the handlers of this checkout.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let target_dir = root.join("target").join("wasm-tests");

    let mut packages = Vec::new();
    for folder in ["plugins", "tests/plugins"] {
        let folder = root.join(folder);
        println!("cargo:rerun-if-changed={}", folder.display());
        for crate_dir in crate_dirs(&folder) {
            println!("cargo:rerun-if-changed={}", crate_dir.display());
            println!("cargo:rerun-if-changed={}", crate_dir.join("src").display());
            packages.push(package_name(&crate_dir));
        }
    }
    for path in ["guest-sdk/src", "guest-sdk/Cargo.toml", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    ensure_target("wasm32-wasip2");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .args([
            "build",
            "--profile",
            "wasm",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for package in &packages {
        command.args(["-p", package]);
    }
    // Settings meant for the host build must not leak into the guest build.
    for key in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        command.env_remove(key);
    }
    let status = command
        .status()
        .expect("run cargo to build the wasm handlers");
    assert!(status.success(), "building the wasm handlers failed");
    let wasm_dir = target_dir.join("wasm32-wasip2").join("wasm");

    // Hand-written core modules: `plugins/<name>/handler.wat` becomes
    // `<name>.wasm` beside the Rust handlers (the gateway wraps it).
    for folder in ["plugins", "tests/plugins"] {
        let Ok(entries) = std::fs::read_dir(root.join(folder)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let source = entry.path().join("handler.wat");
            if !source.is_file() {
                continue;
            }
            println!("cargo:rerun-if-changed={}", source.display());
            let bytes =
                wat::parse_file(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
            let name = entry.file_name().to_string_lossy().replace('-', "_");
            std::fs::write(wasm_dir.join(format!("{name}.wasm")), bytes).unwrap();
        }
    }
    println!(
        "cargo:rustc-env=WASMGATE_TEST_WASM_DIR={}",
        wasm_dir.display()
    );
}

fn crate_dirs(folder: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.join("Cargo.toml").is_file())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn package_name(crate_dir: &Path) -> String {
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    manifest
        .lines()
        .find_map(|line| {
            let value = line.trim().strip_prefix("name")?.trim().strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| panic!("no package name in {}", crate_dir.display()))
}

fn ensure_target(target: &str) {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == target)
        })
        .unwrap_or(false);
    if !installed {
        let status = Command::new("rustup")
            .args(["target", "add", target])
            .status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "the {target} target is missing and `rustup target add {target}` failed"
        );
    }
}
