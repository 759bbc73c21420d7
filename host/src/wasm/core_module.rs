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

/// Wraps a core module into a component of the handler world. The error
/// names what does not fit: a missing export, an unknown import, a wrong
/// signature.
pub fn wrap(module: &[u8]) -> Result<Vec<u8>, WrapError> {
    let (resolve, world) = handler_world();
    let mut module = module.to_vec();
    wit_component::embed_component_metadata(&mut module, resolve, *world, StringEncoding::UTF8)
        .map_err(|e| WrapError(format!("{e:#}")))?;
    ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .and_then(|mut encoder| encoder.encode())
        .map_err(|e| WrapError(format!("{e:#}")))
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
    fn an_unknown_import_is_refused_by_name() {
        let module = wat::parse_str(
            r#"(module (import "wasmgate:gateway/host@0.1.0" "teleport" (func)) (memory (export "memory") 1))"#,
        )
        .unwrap();
        let error = wrap(&module).unwrap_err().to_string();
        assert!(error.contains("teleport"), "{error}");
    }
}
