//! Plain core modules as handlers: a core module that follows the component
//! model's canonical ABI for the `wasmgate:gateway/handler` world (exports
//! `handle`, its `cabi_post_handle`, `cabi_realloc` and `memory`; imports
//! from `wasmgate:gateway/host@0.1.0`) is wrapped into a component here, so
//! languages without component tooling (hand-written WAT, AssemblyScript,
//! bare C or Zig) still run on the one component runtime path.

use std::sync::OnceLock;

use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{Resolve, WorldId};

/// The contract, compiled into the gateway so wrapping needs no files.
const WIT: &str = include_str!("../../../wit/gateway.wit");

/// Why a core module could not be wrapped.
#[derive(Debug, thiserror::Error)]
#[error("core module does not fit the wasmgate:gateway/handler world: {0}")]
pub struct WrapError(String);

fn handler_world() -> &'static (Resolve, WorldId) {
    static WORLD: OnceLock<(Resolve, WorldId)> = OnceLock::new();
    WORLD.get_or_init(|| {
        let mut resolve = Resolve::default();
        let package = resolve
            .push_str("gateway.wit", WIT)
            .expect("the built-in WIT parses");
        let world = resolve
            .select_world(&[package], Some("handler"))
            .expect("the built-in WIT has the handler world");
        (resolve, world)
    })
}

/// Whether `bytes` are a core module (not a component).
pub fn is_core_module(bytes: &[u8]) -> bool {
    wasmparser::Parser::is_core_wasm(bytes)
}

/// The import module of WASI preview 1, which wasi-libc, Go's `wasip1`
/// port, Zig and others build against.
const WASI_PREVIEW1: &str = "wasi_snapshot_preview1";

/// Whether the module imports anything from WASI preview 1.
pub(crate) fn imports_wasi_preview1(module: &[u8]) -> bool {
    wasmparser::Parser::new(0)
        .parse_all(module)
        .filter_map(Result::ok)
        .any(|payload| match payload {
            wasmparser::Payload::ImportSection(imports) => imports
                .into_imports()
                .filter_map(Result::ok)
                .any(|import| import.module == WASI_PREVIEW1),
            _ => false,
        })
}

/// Wraps a core module into a component of the handler world. A module
/// that imports WASI preview 1 gets the preview-1 reactor adapter, so it
/// loads as its toolchain built it. The error names what does not fit: a
/// missing export, an unknown import, a wrong signature, with the fix where
/// there is a usual one.
pub fn wrap(module: &[u8]) -> Result<Vec<u8>, WrapError> {
    let (resolve, world) = handler_world();
    let wasi = imports_wasi_preview1(module);
    let mut module = module.to_vec();
    wit_component::embed_component_metadata(&mut module, resolve, *world, StringEncoding::UTF8)
        .map_err(|e| WrapError(with_hint(format!("{e:#}"))))?;
    ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .and_then(|encoder| {
            if wasi {
                encoder.adapter(
                    WASI_PREVIEW1,
                    wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
                )
            } else {
                Ok(encoder)
            }
        })
        .and_then(|mut encoder| encoder.encode())
        .map_err(|e| WrapError(with_hint(format!("{e:#}"))))
}

/// Adds the usual fix to a wrapping error a handler author meets often.
fn with_hint(message: String) -> String {
    let hint = if message.contains("cabi_realloc") {
        "; export `cabi_realloc(old_ptr, old_len, align, new_len) -> ptr` (see docs/languages/wat.md), and call no import from it"
    } else if message.contains("`handle`") || message.contains("\"handle\"") {
        "; export `handle` with the canonical ABI of the handler world (see docs/languages/wat.md); a Rust handler needs `wasmgate_guest::handler!(YourType);` and `crate-type = [\"cdylib\"]`"
    } else {
        ""
    };
    message + hint
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_without_handle_is_refused_by_name() {
        let module = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
        assert!(is_core_module(&module));
        let error = wrap(&module).unwrap_err().to_string();
        assert!(error.contains("handle"), "{error}");
    }

    #[test]
    fn a_module_that_imports_wasi_preview1_gets_the_adapter() {
        let echo = include_str!("../../../plugins/echo-wat/handler.wat");
        let with_wasi = echo.replacen(
            "(memory (export \"memory\") 1)",
            "(import \"wasi_snapshot_preview1\" \"random_get\" (func (param i32 i32) (result i32)))\n  (memory (export \"memory\") 1)",
            1,
        );
        assert_ne!(with_wasi, echo, "the import was added");
        let module = wat::parse_str(&with_wasi).unwrap();
        let component = wrap(&module).unwrap();
        // The adapter's own module came with it: WASI 0.2 imports, no
        // preview-1 import left.
        let text = String::from_utf8_lossy(&component);
        assert!(text.contains("wasi:random/random"), "the adapter is in");
        // Without the import, no adapter.
        let plain = wrap(&wat::parse_str(echo).unwrap()).unwrap();
        assert!(!String::from_utf8_lossy(&plain).contains("wasi:random/random"));
    }

    #[test]
    fn a_missing_handle_names_the_rust_fix() {
        let module = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
        let error = wrap(&module).unwrap_err().to_string();
        assert!(
            error.contains("handler!") || error.contains("cabi_realloc"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_import_is_refused_by_name() {
        let module = wat::parse_str(
            r#"(module (import "wasmgate:gateway/host@0.1.0" "teleport" (func)) (memory (export "memory") 1))"#,
        )
        .unwrap();
        let error = wrap(&module).unwrap_err().to_string();
        assert!(error.contains("teleport"), "{error}");
    }
}
