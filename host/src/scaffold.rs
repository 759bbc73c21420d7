//! `wasmgate new NAME --lang rust|go` and `wasmgate build DIR`: a service
//! folder that builds outside this repository, and its build.
//!
//! The guest SDKs travel inside the binary: `new` writes a copy of the
//! language's SDK beside the handler. For Rust, its sources and its own
//! WIT, with the versions of its dependencies pinned to those it is tested
//! with, so the folder builds from anywhere with only `cargo` and the
//! `wasm32-wasip2` target; for Go, the `wasmgate` package (standard
//! library only), so the folder builds with only Go 1.24 or later.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

/// The guest SDK's files, by path inside its folder.
const GUEST_SDK: &[(&str, &str)] = &[
    ("src/lib.rs", include_str!("../../guest-sdk/src/lib.rs")),
    (
        "src/answer.rs",
        include_str!("../../guest-sdk/src/answer.rs"),
    ),
    (
        "src/context.rs",
        include_str!("../../guest-sdk/src/context.rs"),
    ),
    ("src/error.rs", include_str!("../../guest-sdk/src/error.rs")),
    ("src/event.rs", include_str!("../../guest-sdk/src/event.rs")),
    (
        "src/groups.rs",
        include_str!("../../guest-sdk/src/groups.rs"),
    ),
    (
        "src/handler.rs",
        include_str!("../../guest-sdk/src/handler.rs"),
    ),
    ("src/host.rs", include_str!("../../guest-sdk/src/host.rs")),
    ("src/kv.rs", include_str!("../../guest-sdk/src/kv.rs")),
    (
        "src/payload.rs",
        include_str!("../../guest-sdk/src/payload.rs"),
    ),
    (
        "src/triggers.rs",
        include_str!("../../guest-sdk/src/triggers.rs"),
    ),
    (
        "wit/gateway.wit",
        include_str!("../../guest-sdk/wit/gateway.wit"),
    ),
];

/// The Go guest SDK's files (`guest-sdk/go`), by path inside its folder.
const GO_SDK: &[(&str, &str)] = &[
    ("go.mod", include_str!("../../guest-sdk/go/go.mod")),
    ("abi.go", include_str!("../../guest-sdk/go/abi.go")),
    ("events.go", include_str!("../../guest-sdk/go/events.go")),
    ("groups.go", include_str!("../../guest-sdk/go/groups.go")),
    ("host.go", include_str!("../../guest-sdk/go/host.go")),
    ("kv.go", include_str!("../../guest-sdk/go/kv.go")),
    (
        "triggers.go",
        include_str!("../../guest-sdk/go/triggers.go"),
    ),
];

/// The Go SDK's module path.
const GO_SDK_MODULE: &str = "github.com/wasmgate/wasmgate/guest-sdk/go";

/// The guest SDK's manifest outside the workspace: the workspace's
/// versions, wit-bindgen pinned exactly (its generated code is what the SDK
/// is written against). A unit test keeps it in step with the workspace.
const GUEST_SDK_MANIFEST: &str = r#"[package]
name = "wasmgate-guest"
description = "Write wasmgate WebSocket handlers in Rust."
version = "0.1.0"
edition = "2021"
license = "Apache-2.0"

[dependencies]
wit-bindgen = { version = "=0.46.0", default-features = false, features = ["macros", "realloc", "std"] }
serde = { version = "1", features = ["derive"] }
serde_json = "1"
base64 = "0.22"
thiserror = "2"
"#;

/// The languages `new` knows, with the guide of those it cannot write yet.
const LANGUAGES: &[(&str, Option<&str>)] = &[
    ("rust", None),
    ("go", None),
    ("c", Some("docs/languages/c.md")),
    ("zig", Some("docs/languages/zig.md")),
    ("assemblyscript", Some("docs/languages/assemblyscript.md")),
    ("python", Some("docs/languages/python.md")),
    ("js", Some("docs/languages/javascript.md")),
];

/// Writes a new service folder `dir` (named after its last component) in
/// `lang`; refuses a folder that exists and is not empty.
pub fn new_service(dir: &Path, lang: &str) -> anyhow::Result<()> {
    match LANGUAGES.iter().find(|(name, _)| *name == lang) {
        None => bail!(
            "unknown language {lang:?}; one of: {}",
            LANGUAGES
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some((_, Some(guide))) => bail!(
            "`wasmgate new` writes Rust and Go services so far; for {lang}, start from the \
             example service of the repository and its guide, {guide}"
        ),
        Some((_, None)) => {}
    }
    let name = dir
        .file_name()
        .and_then(|name| name.to_str())
        .context("the folder needs a name")?;
    if !crate::plugins::is_valid_service_name(name) {
        bail!("{name:?} cannot name a service: use 1 to 64 ASCII letters, digits, `-` and `_`");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        bail!("{name:?} cannot name a {lang} package: begin it with a letter");
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!("{} exists and is not empty", dir.display());
    }
    let files = if lang == "go" {
        go_files(name)
    } else {
        rust_files(name)
    };
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A Rust service folder: the handler crate and the SDK crate beside it.
fn rust_files(name: &str) -> Vec<(PathBuf, String)> {
    let crate_name = name.replace('-', "_");
    GUEST_SDK
        .iter()
        .map(|(path, text)| (Path::new("wasmgate-guest").join(path), (*text).to_owned()))
        .chain([
            (
                PathBuf::from("wasmgate-guest/Cargo.toml"),
                GUEST_SDK_MANIFEST.to_owned(),
            ),
            (PathBuf::from("Cargo.toml"), manifest(&crate_name)),
            (PathBuf::from("src/lib.rs"), HANDLER.to_owned()),
            (PathBuf::from("README.md"), readme(name, RUST_README)),
            (PathBuf::from(".gitignore"), "/target\n".to_owned()),
        ])
        .collect()
}

/// A Go service folder: the handler's module, which takes the SDK from the
/// copy beside it, and its build script.
fn go_files(name: &str) -> Vec<(PathBuf, String)> {
    GO_SDK
        .iter()
        .map(|(path, text)| (Path::new("wasmgate-go").join(path), (*text).to_owned()))
        .chain([
            (
                PathBuf::from("go.mod"),
                format!(
                    "module {name}\n\ngo 1.24\n\nrequire {GO_SDK_MODULE} v0.0.0\n\n\
                     replace {GO_SDK_MODULE} => ./wasmgate-go\n"
                ),
            ),
            (PathBuf::from("handler.go"), GO_HANDLER.to_owned()),
            (PathBuf::from("build.sh"), GO_BUILD.to_owned()),
            (PathBuf::from("README.md"), readme(name, GO_README)),
        ])
        .collect()
}

/// The handler's manifest: a `cdylib` (a Rust handler must be one), its own
/// workspace (so a folder inside another project builds alone).
fn manifest(crate_name: &str) -> String {
    format!(
        r#"[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
wasmgate-guest = {{ path = "wasmgate-guest" }}

# Its own workspace: the folder builds alone wherever it is.
[workspace]

[profile.release]
strip = true
"#
    )
}

/// The starting handler: an echo that greets on register.
const HANDLER: &str = r#"//! A wasmgate handler: sends every message back to its sender.

use wasmgate_guest::{Context, DataSend, Handler, HandlerError};

struct Service;

impl Handler for Service {
    fn transfer(ctx: &Context, event: DataSend) -> Result<(), HandlerError> {
        wasmgate_guest::push(&ctx.connection_id, event.into_payload()?)?;
        Ok(())
    }
}

wasmgate_guest::handler!(Service);
"#;

/// The starting Go handler: the same echo.
const GO_HANDLER: &str = r#"// A wasmgate handler: sends every message back to its sender.
package main

import wasmgate "github.com/wasmgate/wasmgate/guest-sdk/go"

func init() {
	wasmgate.Serve(wasmgate.Handler{
		Transfer: func(ctx *wasmgate.Context, event *wasmgate.DataSend) error {
			return wasmgate.Push(ctx.ConnectionID, event.Message())
		},
	})
}

func main() {}
"#;

/// Builds a Go service: Go's wasip1 port in c-shared mode, exports by
/// `//go:wasmexport`.
const GO_BUILD: &str = r#"#!/usr/bin/env bash
# Builds handler.wasm with Go 1.24 or later (GO names another go binary).
set -euo pipefail
cd "$(dirname "$0")"
GOOS=wasip1 GOARCH=wasm "${GO:-go}" build -buildmode=c-shared -trimpath -o handler.wasm .
"#;

/// The lines of a service's README that name its files and its build.
const RUST_README: &str = "A wasmgate service: the handler is `src/lib.rs`; `wasmgate-guest/` is the SDK.\n\
     Build: `wasmgate build .` (needs `rustup target add wasm32-wasip2`); it writes `handler.wasm`.\n";
const GO_README: &str = "A wasmgate service: the handler is `handler.go`; `wasmgate-go/` is the SDK.\n\
     Build: `wasmgate build .` (runs `build.sh`; needs Go 1.24 or later); it writes `handler.wasm`.\n";

fn readme(name: &str, files: &str) -> String {
    format!(
        "# {name}\n\n{files}\
         Serve: put this folder in the gateway's `plugins/` folder (or `wasmgate serve --plugins ..`), \
         then `wasmgate client ws://127.0.0.1:8080/ws/{name}`.\n"
    )
}

/// Builds the service folder `dir` and puts `handler.wasm` in it: `cargo`
/// for a Rust service (release, `wasm32-wasip2`), else its `build.sh`.
/// Returns the path of the handler file.
pub fn build_service(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    let script = dir.join("build.sh");
    let handler = dir.join("handler.wasm");
    if manifest.is_file() {
        let artefact = cargo_build(&manifest)?;
        std::fs::copy(&artefact, &handler)
            .with_context(|| format!("copying {} to {}", artefact.display(), handler.display()))?;
    } else if script.is_file() {
        let status = Command::new("bash")
            .arg(&script)
            .current_dir(dir)
            .status()
            .with_context(|| format!("running {}", script.display()))?;
        if !status.success() {
            bail!("{} failed ({status})", script.display());
        }
        if !handler.is_file() {
            bail!("{} did not write handler.wasm", script.display());
        }
    } else {
        bail!(
            "{} has neither Cargo.toml nor build.sh: nothing to build",
            dir.display()
        );
    }
    Ok(handler)
}

/// `cargo build --release --target wasm32-wasip2` of `manifest`; the `.wasm`
/// it produced.
fn cargo_build(manifest: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo (is Rust installed?)")?;
    if !output.status.success() {
        bail!(
            "cargo build failed ({}); if the target is missing: rustup target add wasm32-wasip2",
            output.status
        );
    }
    let mut wasm = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        if let Some(files) = message["filenames"].as_array() {
            wasm = files
                .iter()
                .filter_map(|file| file.as_str())
                .find(|file| file.ends_with(".wasm"))
                .map(PathBuf::from)
                .or(wasm);
        }
    }
    wasm.context(
        "cargo built no .wasm: the crate needs `[lib] crate-type = [\"cdylib\"]` in Cargo.toml",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The copy written by `new` is the SDK as tested: every source file,
    /// and dependency versions that match the workspace's.
    #[test]
    fn the_written_sdk_matches_the_workspace() {
        let sources = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk/src"))
            .unwrap()
            .map(|entry| format!("src/{}", entry.unwrap().file_name().to_string_lossy()))
            .collect::<Vec<_>>();
        for source in &sources {
            assert!(
                GUEST_SDK.iter().any(|(path, _)| path == source),
                "{source} is not written by `wasmgate new`"
            );
        }
        let go = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk/go"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".go") || name == "go.mod")
            .collect::<Vec<_>>();
        for file in &go {
            assert!(
                GO_SDK.iter().any(|(path, _)| path == file),
                "guest-sdk/go/{file} is not written by `wasmgate new --lang go`"
            );
        }
        assert!(GO_SDK[0].1.contains(&format!("module {GO_SDK_MODULE}\n")));
        let workspace = include_str!("../../Cargo.toml");
        let lock = include_str!("../../Cargo.lock");
        // The exact wit-bindgen the workspace builds the SDK with.
        let pinned = GUEST_SDK_MANIFEST
            .split("wit-bindgen = { version = \"=")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap();
        let major_minor = pinned.rsplit_once('.').unwrap().0;
        assert!(
            workspace.contains(&format!("wit-bindgen = {{ version = \"{major_minor}\"")),
            "the workspace's wit-bindgen is not {major_minor}"
        );
        assert!(
            lock.contains(&format!("name = \"wit-bindgen\"\nversion = \"{pinned}\"")),
            "Cargo.lock has no wit-bindgen {pinned}"
        );
        for line in [
            "serde = { version = \"1\"",
            "serde_json = \"1\"",
            "base64 = \"0.22\"",
            "thiserror = \"2\"",
        ] {
            assert!(workspace.contains(line), "{line}");
            assert!(GUEST_SDK_MANIFEST.contains(line), "{line}");
        }
    }

    #[test]
    fn new_refuses_what_it_cannot_write() {
        let dir = std::env::temp_dir().join(format!("wasmgate-new-{}", std::process::id()));
        let error = new_service(&dir.join("svc"), "zig")
            .unwrap_err()
            .to_string();
        assert!(error.contains("Rust and Go services so far"), "{error}");
        let error = new_service(&dir.join("svc"), "cobol")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown language"), "{error}");
        let error = new_service(&dir.join("bad name"), "rust")
            .unwrap_err()
            .to_string();
        assert!(error.contains("cannot name a service"), "{error}");
        std::fs::create_dir_all(dir.join("full")).unwrap();
        std::fs::write(dir.join("full/x"), "").unwrap();
        let error = new_service(&dir.join("full"), "rust")
            .unwrap_err()
            .to_string();
        assert!(error.contains("not empty"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
