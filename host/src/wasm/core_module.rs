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

/// The revision of what [`wrap`] makes of a module; part of the compile
/// cache's key. Raise it whenever the wrapping changes.
pub(crate) const WRAPPER_REVISION: u32 = 2;

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
    let mut module = if wasi && needs_adapter_allocator(module) {
        with_adapter_allocator(module).map_err(|e| WrapError(format!("{e:#}")))?
    } else {
        module.to_vec()
    };
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

/// Whether the module exports `cabi_realloc` but no
/// `cabi_realloc_adapter`: the preview-1 adapter would then take its stack
/// and state from the module's own allocator, at its first WASI call, which
/// may come from `_initialize` before a language runtime (Go's) has set up
/// the heap that allocator needs.
fn needs_adapter_allocator(module: &[u8]) -> bool {
    let mut realloc = false;
    let mut adapter = false;
    for payload in wasmparser::Parser::new(0).parse_all(module).flatten() {
        if let wasmparser::Payload::ExportSection(exports) = payload {
            for export in exports.into_iter().flatten() {
                realloc |= export.name == "cabi_realloc";
                adapter |= export.name == "cabi_realloc_adapter";
            }
        }
    }
    realloc && !adapter
}

/// The module with one more function, exported as `cabi_realloc_adapter`:
/// it takes fresh pages from `memory.grow` for each request (the adapter
/// asks once or twice per instance, for its stack and state), so the
/// adapter never depends on the module's own allocator. Indices of existing
/// types and functions do not change: the new type and function come last.
fn with_adapter_allocator(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    use wasm_encoder::reencode::{utils, Error, Reencode};

    let mut types = 0u32;
    let mut functions = 0u32;
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        match payload? {
            wasmparser::Payload::TypeSection(section) => {
                for group in section {
                    types += group?.types().len() as u32;
                }
            }
            wasmparser::Payload::ImportSection(section) => {
                for import in section.into_imports() {
                    if matches!(import?.ty, wasmparser::TypeRef::Func(_)) {
                        functions += 1;
                    }
                }
            }
            wasmparser::Payload::FunctionSection(section) => functions += section.count(),
            _ => {}
        }
    }

    struct AddAllocator {
        ty: u32,
        func: u32,
    }
    impl Reencode for AddAllocator {
        type Error = std::convert::Infallible;

        fn parse_type_section(
            &mut self,
            types: &mut wasm_encoder::TypeSection,
            section: wasmparser::TypeSectionReader<'_>,
        ) -> Result<(), Error<Self::Error>> {
            utils::parse_type_section(self, types, section)?;
            types.ty().function(
                [wasm_encoder::ValType::I32; 4],
                [wasm_encoder::ValType::I32],
            );
            Ok(())
        }

        fn parse_function_section(
            &mut self,
            functions: &mut wasm_encoder::FunctionSection,
            section: wasmparser::FunctionSectionReader<'_>,
        ) -> Result<(), Error<Self::Error>> {
            utils::parse_function_section(self, functions, section)?;
            functions.function(self.ty);
            Ok(())
        }

        fn parse_export_section(
            &mut self,
            exports: &mut wasm_encoder::ExportSection,
            section: wasmparser::ExportSectionReader<'_>,
        ) -> Result<(), Error<Self::Error>> {
            utils::parse_export_section(self, exports, section)?;
            exports.export(
                "cabi_realloc_adapter",
                wasm_encoder::ExportKind::Func,
                self.func,
            );
            Ok(())
        }

        fn parse_code_section(
            &mut self,
            code: &mut wasm_encoder::CodeSection,
            section: wasmparser::CodeSectionReader<'_>,
        ) -> Result<(), Error<Self::Error>> {
            utils::parse_code_section(self, code, section)?;
            code.function(&grow_allocator());
            Ok(())
        }
    }
    let mut encoded = wasm_encoder::Module::new();
    let mut reencoder = AddAllocator {
        ty: types,
        func: functions,
    };
    reencoder
        .parse_core_module(&mut encoded, wasmparser::Parser::new(0), module)
        .map_err(|error| anyhow::anyhow!("adding the adapter's allocator: {error:?}"))?;
    Ok(encoded.finish())
}

/// `(old_ptr, old_size, align, new_size) -> ptr` on fresh pages: grows
/// memory 0 by enough 64 KiB pages (page-aligned, so any alignment holds),
/// copies what an `old_ptr` held, and traps when memory cannot grow.
fn grow_allocator() -> wasm_encoder::Function {
    use wasm_encoder::{BlockType, Function, Instruction as I, ValType};
    // Parameters 0..4; local 4: the first new page, then its address.
    let mut body = Function::new([(1, ValType::I32)]);
    body.instruction(&I::LocalGet(3))
        .instruction(&I::I32Const(65535))
        .instruction(&I::I32Add)
        .instruction(&I::I32Const(16))
        .instruction(&I::I32ShrU)
        .instruction(&I::MemoryGrow(0))
        .instruction(&I::LocalTee(4))
        .instruction(&I::I32Const(-1))
        .instruction(&I::I32Eq)
        .instruction(&I::If(BlockType::Empty))
        .instruction(&I::Unreachable)
        .instruction(&I::End)
        .instruction(&I::LocalGet(4))
        .instruction(&I::I32Const(16))
        .instruction(&I::I32Shl)
        .instruction(&I::LocalSet(4))
        // A reallocation keeps what the old block held.
        .instruction(&I::LocalGet(0))
        .instruction(&I::If(BlockType::Empty))
        .instruction(&I::LocalGet(4))
        .instruction(&I::LocalGet(0))
        .instruction(&I::LocalGet(1))
        .instruction(&I::LocalGet(3))
        .instruction(&I::LocalGet(1))
        .instruction(&I::LocalGet(3))
        .instruction(&I::I32LtU)
        .instruction(&I::Select)
        .instruction(&I::MemoryCopy {
            src_mem: 0,
            dst_mem: 0,
        })
        .instruction(&I::End)
        .instruction(&I::LocalGet(4))
        .instruction(&I::End);
    body
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
    #[test]
    fn a_preview1_module_gets_an_allocator_of_its_own_for_the_adapter() {
        let module = wat::parse_str(
            r#"(module
                 (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                 (memory (export "memory") 1)
                 (func $f (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) unreachable))"#,
        )
        .unwrap();
        assert!(needs_adapter_allocator(&module));
        let added = with_adapter_allocator(&module).unwrap();
        wasmparser::validate(&added).unwrap();
        assert!(
            !needs_adapter_allocator(&added),
            "cabi_realloc_adapter is exported"
        );
        // The old function keeps its index (1, after the import); the new
        // one comes last.
        let mut exports = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(&added) {
            if let wasmparser::Payload::ExportSection(section) = payload.unwrap() {
                for export in section {
                    let export = export.unwrap();
                    exports.push((export.name.to_owned(), export.index));
                }
            }
        }
        assert!(
            exports.contains(&("cabi_realloc".to_owned(), 1)),
            "{exports:?}"
        );
        assert!(
            exports.contains(&("cabi_realloc_adapter".to_owned(), 2)),
            "{exports:?}"
        );
        // A module that brings its own, or has no cabi_realloc, is left alone.
        let own = wat::parse_str(
            r#"(module (memory (export "memory") 1)
                 (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) i32.const 0)
                 (func (export "cabi_realloc_adapter") (param i32 i32 i32 i32) (result i32) i32.const 0))"#,
        )
        .unwrap();
        assert!(!needs_adapter_allocator(&own));
    }
}
