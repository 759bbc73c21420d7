//! `wasmgate check FILE` and `wasmgate componentize IN OUT`: what a handler
//! author needs to know about a file without running it, and the core
//! module wrapping of the gateway as a command of its own.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use wasmtime::component::types::ComponentItem;

use crate::config::GatewayConfig;
use crate::protocol::Role;
use crate::wasm::{compiler, core_module, Runtime};

/// What `wasmgate check` found out about a handler file.
#[derive(Debug)]
pub struct CheckReport {
    /// The file's size in bytes.
    pub size: usize,
    /// `component`, or `core module` (then wrapped as the gateway would).
    pub kind: &'static str,
    /// Whether the WASI preview-1 adapter is applied when it is wrapped.
    pub preview1_adapter: bool,
    /// How long compiling it took (wrapping included).
    pub compile_time: Duration,
    /// The component's imports, by name.
    pub imports: Vec<String>,
    /// The component's exports, by name.
    pub exports: Vec<String>,
    /// The roles the file serves when it has this name in a service folder.
    pub roles: Vec<Role>,
    /// `None` when it fits the handler world; otherwise why not, with the
    /// fix where there is a usual one.
    pub problem: Option<String>,
}

impl CheckReport {
    /// Whether the gateway would load the file.
    pub fn fits(&self) -> bool {
        self.problem.is_none()
    }
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kind = self.kind.to_owned();
        if self.preview1_adapter {
            kind.push_str(" importing WASI preview 1 (the preview-1 adapter is applied)");
        }
        writeln!(f, "kind: {kind}")?;
        writeln!(f, "size: {} bytes", self.size)?;
        writeln!(
            f,
            "compile time: {:.0} ms",
            self.compile_time.as_secs_f64() * 1000.0
        )?;
        for (title, names) in [("imports", &self.imports), ("exports", &self.exports)] {
            if names.is_empty() {
                writeln!(f, "{title}: none")?;
            } else {
                writeln!(f, "{title}:")?;
                for name in names {
                    writeln!(f, "  {name}")?;
                }
            }
        }
        match &self.problem {
            None => {
                let roles: Vec<_> = self.roles.iter().map(|role| role.as_str()).collect();
                writeln!(f, "roles: {}", roles.join(", "))?;
                write!(f, "fits the wasmgate:gateway/handler world")
            }
            Some(problem) => write!(f, "does not fit: {problem}"),
        }
    }
}

/// Why a file could not be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not WebAssembly; the message says what it looks like.
    #[error("{0}")]
    NotWasm(String),
    /// The engine could not be set up.
    #[error("{0}")]
    Engine(String),
}

/// Checks `file` the way the gateway loads it: wraps a core module, compiles,
/// and links against the handler world, without running anything.
pub fn check(file: &Path) -> Result<CheckReport, CheckError> {
    let bytes = std::fs::read(file).map_err(|source| CheckError::Read {
        path: file.display().to_string(),
        source,
    })?;
    not_wasm(&bytes).map_or(Ok(()), |why| Err(CheckError::NotWasm(why)))?;
    let config = GatewayConfig {
        max_concurrency: 1,
        ..GatewayConfig::new(".")
    };
    let runtime = Runtime::new(&config).map_err(|e| CheckError::Engine(format!("{e:#}")))?;
    let core = core_module::is_core_module(&bytes);
    let mut report = CheckReport {
        size: bytes.len(),
        kind: if core { "core module" } else { "component" },
        preview1_adapter: core && core_module::imports_wasi_preview1(&bytes),
        compile_time: Duration::ZERO,
        imports: Vec::new(),
        exports: Vec::new(),
        roles: roles_of(file),
        problem: None,
    };
    let started = Instant::now();
    let compiled = compiler::compile_bytes(runtime.engine(), &bytes);
    report.compile_time = started.elapsed();
    let component = match compiled {
        Ok(component) => component,
        Err(error) => {
            if core {
                report.imports = core_items(&bytes, true);
                report.exports = core_items(&bytes, false);
            }
            report.problem = Some(error.to_string());
            return Ok(report);
        }
    };
    let ty = component.component_type();
    let engine = runtime.engine();
    report.imports = ty
        .imports(engine)
        .map(|(name, item)| describe(name, &item.ty))
        .collect();
    report.exports = ty
        .exports(engine)
        .map(|(name, item)| describe(name, &item.ty))
        .collect();
    match runtime.prepare(&component) {
        // A handler built before the `http` and `timer` roles serves only
        // the connection's roles, whatever its file name.
        Ok(module) => report.roles.retain(|role| module.handles(*role)),
        Err(error) => report.problem = Some(error.to_string()),
    }
    Ok(report)
}

/// `wasmgate componentize IN OUT`: wraps the core module `input` into a
/// component of the handler world (with the preview-1 adapter when it
/// imports WASI preview 1) and writes it to `output`. Returns the
/// component's size and whether the adapter was applied.
pub fn componentize(input: &Path, output: &Path) -> anyhow::Result<(usize, bool)> {
    use anyhow::Context as _;
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    if let Some(why) = not_wasm(&bytes) {
        anyhow::bail!("{}: {why}", input.display());
    }
    if !core_module::is_core_module(&bytes) {
        anyhow::bail!(
            "{} is already a component: the gateway loads it as it is",
            input.display()
        );
    }
    let adapter = core_module::imports_wasi_preview1(&bytes);
    let component = core_module::wrap(&bytes)
        .map_err(|error| anyhow::anyhow!("{}: {error}", input.display()))?;
    std::fs::write(output, &component).with_context(|| format!("writing {}", output.display()))?;
    Ok((component.len(), adapter))
}

/// What a file that is not WebAssembly looks like, with the usual fix.
fn not_wasm(bytes: &[u8]) -> Option<String> {
    if bytes.starts_with(b"\0asm") {
        return None;
    }
    Some(if bytes.starts_with(b"!<arch>") {
        "an archive (an rlib or a static library), not WebAssembly: a Rust handler needs \
         `[lib] crate-type = [\"cdylib\"]` in its Cargo.toml, and the file is then \
         target/wasm32-wasip2/release/<name>.wasm"
            .to_owned()
    } else if bytes.starts_with(b"(module") || bytes.starts_with(b"(component") {
        "WebAssembly text, not binary: assemble it first (e.g. `wasm-tools parse`)".to_owned()
    } else if bytes.starts_with(b"\x7fELF") {
        "a native executable (ELF), not WebAssembly: build for wasm32-wasip2 \
         (`cargo build --target wasm32-wasip2`) or wasm32-wasip1"
            .to_owned()
    } else {
        "not a WebAssembly file (no \\0asm header)".to_owned()
    })
}

/// The roles a file of this name serves in a service folder.
fn roles_of(file: &Path) -> Vec<Role> {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match Role::ALL
        .into_iter()
        .find(|role| name == format!("{}.wasm", role.as_str()))
    {
        Some(role) => vec![role],
        None => Role::ALL.to_vec(),
    }
}

/// A component import or export: its name and what kind of item it is.
fn describe(name: &str, item: &ComponentItem) -> String {
    let kind = match item {
        ComponentItem::ComponentFunc(_) => "function",
        ComponentItem::CoreFunc(_) => "core function",
        ComponentItem::Module(_) => "module",
        ComponentItem::Component(_) => "component",
        ComponentItem::ComponentInstance(_) => "instance",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    };
    format!("{name} ({kind})")
}

/// The imports (`imports`) or exports of a core module, as `module.name`
/// or `name`, for a module that could not be wrapped.
fn core_items(bytes: &[u8], imports: bool) -> Vec<String> {
    let mut items = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes).flatten() {
        match payload {
            wasmparser::Payload::ImportSection(section) if imports => {
                for import in section.into_imports().flatten() {
                    let mut line = String::new();
                    let _ = write!(line, "{}.{}", import.module, import.name);
                    items.push(line);
                }
            }
            wasmparser::Payload::ExportSection(section) if !imports => {
                for export in section.into_iter().flatten() {
                    items.push(export.name.to_owned());
                }
            }
            _ => {}
        }
    }
    items
}
