//! The commands for handler authors, run as the installed binary is:
//! `wasmgate check FILE` and `wasmgate componentize IN OUT`.

use std::path::{Path, PathBuf};
use std::process::Command;

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
        "roles: register, transfer, cleanup",
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
