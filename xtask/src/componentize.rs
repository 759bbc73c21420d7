//! Turning a WASI preview-1 core module into a handler component
//! ([`componentize`], with the `componentize` feature).

use std::path::Path;

use anyhow::{Context as _, Result};

/// Turns a core module built against WASI preview 1 (e.g. C with wasi-libc)
/// into a component of the `wasmgate:gateway/handler` world: embeds the world
/// from `wit_file`, then encodes the component with the WASI preview-1
/// reactor adapter, so `wasi_snapshot_preview1` imports become WASI 0.2
/// imports the gateway provides. The module must follow the canonical ABI
/// of the world (see `docs/languages/wat.md`).
pub fn componentize(core_module: &[u8], wit_file: &Path) -> Result<Vec<u8>> {
    use wit_component::{ComponentEncoder, StringEncoding};

    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_path(wit_file)
        .with_context(|| format!("parsing {}", wit_file.display()))?;
    let world = resolve.select_world(&[package], Some("handler"))?;
    let mut module = core_module.to_vec();
    wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)?;
    ComponentEncoder::default()
        .validate(true)
        .module(&module)?
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
}
