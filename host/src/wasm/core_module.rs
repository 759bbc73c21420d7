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
pub(crate) const WRAPPER_REVISION: u32 = 3;

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
///
/// A module whose own `component-type` custom sections are malformed can
/// make `wit-component` panic while it decodes them (an index past the
/// section's end, found by fuzzing); that panic is caught here and becomes
/// an error like any other, so no caller (the compile queue, `wasmgate
/// check`, `wasmgate invoke`) sees it.
pub fn wrap(module: &[u8]) -> Result<Vec<u8>, WrapError> {
    std::panic::catch_unwind(|| wrap_unchecked(module)).unwrap_or_else(|panic| {
        let why = super::compiler::panic_text(&*panic);
        Err(WrapError(format!(
            "the module's component metadata (its `component-type` custom sections) \
             is malformed: wit-component could not decode it ({why})"
        )))
    })
}

/// [`wrap`], which may panic on malformed component metadata.
fn wrap_unchecked(module: &[u8]) -> Result<Vec<u8>, WrapError> {
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

/// The text an area of a module's data reserved for the adapter begins
/// with, followed by the area's size in decimal and `;` (the Go package
/// declares one: guest-sdk/go/abi.go, `adapterMemory`).
const ADAPTER_MEMORY_MARK: &[u8] = b"wasmgate:adapter-memory:";

/// Where the adapter's memory comes from, in a module that reserves an area
/// for it: the address of the word that holds the next free address (zero
/// before the first allocation), the first address to hand out, and the
/// end of the area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AdapterArea {
    next: u32,
    start: u32,
    end: u32,
}

/// The area the module reserved for the adapter in its data: an active data
/// segment of memory 0 at a constant address that holds
/// [`ADAPTER_MEMORY_MARK`], the size and `;`. The area's bytes after the mark
/// must be zero when the module starts (the module keeps them so), and
/// nothing but the adapter may use them.
fn adapter_area(module: &[u8]) -> anyhow::Result<Option<AdapterArea>> {
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        let wasmparser::Payload::DataSection(section) = payload? else {
            continue;
        };
        for data in section {
            let data = data?;
            let wasmparser::DataKind::Active {
                memory_index: 0,
                offset_expr,
            } = data.kind
            else {
                continue;
            };
            let Some(at) = data
                .data
                .windows(ADAPTER_MEMORY_MARK.len())
                .position(|window| window == ADAPTER_MEMORY_MARK)
            else {
                continue;
            };
            let mut offset = offset_expr.get_operators_reader();
            let wasmparser::Operator::I32Const { value: base } = offset.read()? else {
                anyhow::bail!("the adapter's memory is in a data segment at no constant address");
            };
            let rest = &data.data[at + ADAPTER_MEMORY_MARK.len()..];
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let size: u32 = std::str::from_utf8(&rest[..digits])?
                .parse()
                .map_err(|_| anyhow::anyhow!("the adapter's memory has no valid size"))?;
            anyhow::ensure!(
                rest.get(digits) == Some(&b';'),
                "the adapter's memory's size does not end with `;`"
            );
            let mark = (ADAPTER_MEMORY_MARK.len() + digits + 1) as u64;
            let area = u64::from(base as u32) + at as u64;
            let next = (area + mark).next_multiple_of(8);
            let start = next + 8;
            let end = area + u64::from(size);
            anyhow::ensure!(
                start < end && end <= u64::from(u32::MAX),
                "the adapter's memory ({size} bytes at {area}) is too small or out of range"
            );
            return Ok(Some(AdapterArea {
                next: next as u32,
                start: start as u32,
                end: end as u32,
            }));
        }
    }
    Ok(None)
}

/// The module with one more function, exported as `cabi_realloc_adapter`,
/// so the adapter never depends on the module's own allocator (it asks
/// twice per instance, for its state and its stack). In a module that
/// reserves an area for it ([`adapter_area`]) the function hands out memory
/// from that area; otherwise it takes fresh pages from `memory.grow`, which
/// suits a module whose allocator asks `memory.grow` where new memory
/// starts (wasi-libc's does), but not Go's, whose heap assumes it alone
/// grows memory and would later claim those pages too. Indices of existing
/// types and functions do not change: the new type and function come last.
fn with_adapter_allocator(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    use wasm_encoder::reencode::{utils, Error, Reencode};

    let allocator = match adapter_area(module)? {
        Some(area) => area_allocator(area),
        None => grow_allocator(),
    };

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
        allocator: wasm_encoder::Function,
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
            code.function(&self.allocator);
            Ok(())
        }
    }
    let mut encoded = wasm_encoder::Module::new();
    let mut reencoder = AddAllocator {
        ty: types,
        func: functions,
        allocator,
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

/// `(old_ptr, old_size, align, new_size) -> ptr` from the reserved `area`:
/// a bump allocator whose next free address lives in the area's first word
/// (zero: none handed out yet, start at `area.start`). It copies what an
/// `old_ptr` held and traps when the area has no room left.
fn area_allocator(area: AdapterArea) -> wasm_encoder::Function {
    use wasm_encoder::{BlockType, Function, Instruction as I, MemArg, ValType};
    let word = MemArg {
        offset: 0,
        align: 2,
        memory_index: 0,
    };
    // Parameters 0..4; local 4: the address handed out.
    let mut body = Function::new([(1, ValType::I32)]);
    body.instruction(&I::I32Const(area.next as i32))
        .instruction(&I::I32Load(word))
        .instruction(&I::LocalTee(4))
        .instruction(&I::I32Eqz)
        .instruction(&I::If(BlockType::Empty))
        .instruction(&I::I32Const(area.start as i32))
        .instruction(&I::LocalSet(4))
        .instruction(&I::End)
        // Rounded up to the alignment (a power of two).
        .instruction(&I::LocalGet(4))
        .instruction(&I::LocalGet(2))
        .instruction(&I::I32Add)
        .instruction(&I::I32Const(1))
        .instruction(&I::I32Sub)
        .instruction(&I::I32Const(0))
        .instruction(&I::LocalGet(2))
        .instruction(&I::I32Sub)
        .instruction(&I::I32And)
        .instruction(&I::LocalTee(4))
        // Trap unless start <= ptr <= end and new_size <= end - ptr.
        .instruction(&I::I32Const(area.start as i32))
        .instruction(&I::I32LtU)
        .instruction(&I::LocalGet(4))
        .instruction(&I::I32Const(area.end as i32))
        .instruction(&I::I32GtU)
        .instruction(&I::I32Or)
        .instruction(&I::LocalGet(3))
        .instruction(&I::I32Const(area.end as i32))
        .instruction(&I::LocalGet(4))
        .instruction(&I::I32Sub)
        .instruction(&I::I32GtU)
        .instruction(&I::I32Or)
        .instruction(&I::If(BlockType::Empty))
        .instruction(&I::Unreachable)
        .instruction(&I::End)
        .instruction(&I::I32Const(area.next as i32))
        .instruction(&I::LocalGet(4))
        .instruction(&I::LocalGet(3))
        .instruction(&I::I32Add)
        .instruction(&I::I32Store(word))
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

    /// A module that reserves an area for the adapter in its data gets an
    /// allocator that hands out that area, aligned, one block after the
    /// other, never grows memory, and traps once the area is used up.
    #[test]
    fn a_reserved_area_serves_the_adapter_without_growing_memory() {
        let module = wat::parse_str(
            r#"(module
                 (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                 (memory (export "memory") 1)
                 (data (i32.const 1000) "xxwasmgate:adapter-memory:4096;")
                 (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) unreachable))"#,
        )
        .unwrap();
        // The mark begins 2 bytes into the segment and is 29 bytes long; the
        // next-free word follows at the next multiple of 8.
        let area = adapter_area(&module).unwrap().unwrap();
        assert_eq!(
            area,
            AdapterArea {
                next: 1032,
                start: 1040,
                end: 1002 + 4096
            }
        );
        let added = with_adapter_allocator(&module).unwrap();
        wasmparser::validate(&added).unwrap();

        // Run the added function (the import is stubbed).
        let engine = wasmtime::Engine::default();
        let mut store = wasmtime::Store::new(&engine, ());
        let compiled = wasmtime::Module::new(&engine, &added).unwrap();
        let stub = wasmtime::Func::wrap(&mut store, |_: i32, _: i32, _: i32, _: i32| 0i32);
        let instance = wasmtime::Instance::new(&mut store, &compiled, &[stub.into()]).unwrap();
        let alloc = instance
            .get_typed_func::<(i32, i32, i32, i32), i32>(&mut store, "cabi_realloc_adapter")
            .unwrap();
        let memory = instance.get_memory(&mut store, "memory").unwrap();
        let first = alloc.call(&mut store, (0, 0, 8, 100)).unwrap();
        assert_eq!(first, 1040);
        let second = alloc.call(&mut store, (0, 0, 64, 1000)).unwrap();
        assert_eq!(second, 1152, "after the first block, aligned to 64");
        // A reallocation copies the old block.
        memory.data_mut(&mut store)[second as usize..second as usize + 4].copy_from_slice(b"kept");
        let moved = alloc.call(&mut store, (second, 1000, 8, 2000)).unwrap();
        assert_eq!(moved, 2152);
        assert_eq!(
            &memory.data(&store)[moved as usize..moved as usize + 4],
            b"kept"
        );
        assert_eq!(memory.size(&store), 1, "memory never grew");
        // 5098 - 4152 = 946 bytes are left: 947 do not fit.
        assert!(alloc.call(&mut store, (0, 0, 1, 947)).is_err());
        // A fresh instance of the same module has the whole area again, and
        // the last bytes of the area can be handed out.
        let mut store = wasmtime::Store::new(&engine, ());
        let stub = wasmtime::Func::wrap(&mut store, |_: i32, _: i32, _: i32, _: i32| 0i32);
        let instance = wasmtime::Instance::new(&mut store, &compiled, &[stub.into()]).unwrap();
        let alloc = instance
            .get_typed_func::<(i32, i32, i32, i32), i32>(&mut store, "cabi_realloc_adapter")
            .unwrap();
        assert_eq!(
            alloc.call(&mut store, (0, 0, 8, 5098 - 1040)).unwrap(),
            1040
        );
        assert!(alloc.call(&mut store, (0, 0, 1, 1)).is_err());

        // Without the mark: fresh pages from memory.grow, as before.
        let plain = wat::parse_str(
            r#"(module
                 (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                 (memory (export "memory") 1)
                 (data (i32.const 1000) "wasmgate")
                 (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) unreachable))"#,
        )
        .unwrap();
        assert_eq!(adapter_area(&plain).unwrap(), None);
        // A mark without a size is refused rather than guessed at.
        let broken = wat::parse_str(
            r#"(module (memory 1) (data (i32.const 8) "wasmgate:adapter-memory:;"))"#,
        )
        .unwrap();
        assert!(adapter_area(&broken).is_err());
    }
}
