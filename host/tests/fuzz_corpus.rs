//! Replays the committed fuzz inputs through the same decoding and
//! invariants as the cargo-fuzz targets, on stable Rust, so the normal
//! `cargo test` checks them: every file of `fuzz/seeds/<target>/` (written by
//! hand, or by `write_core_module_seeds` below), `fuzz/corpus/<target>/`
//! (kept by the fuzzer) and `fuzz/crashes/<target>/` (inputs that made a
//! target panic; they fail here until the code is fixed). The decoding and
//! the invariants are those of `fuzz/common/checks.rs`, included as is.
//! Fuzzing itself: `scripts/fuzz.sh` and FUZZING.md.

#[path = "../../fuzz/common/checks.rs"]
mod checks;

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `fuzz/<folder>/<target>/`, by name; none if it is missing.
fn files(folder: &str, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(fuzz_dir().join(folder).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable folder").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, check) = checks::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a known target");
    let seeds = files("seeds", target);
    assert!(!seeds.is_empty(), "no seeds for {target}");
    let mut failed = Vec::new();
    let mut count = 0;
    for file in seeds
        .into_iter()
        .chain(files("corpus", target))
        .chain(files("crashes", target))
    {
        let data = fs::read(&file).expect("a readable input");
        count += 1;
        // The panic message is printed by the hook; collect every failing
        // file before failing.
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {count} inputs failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn push_request_inputs() {
    replay("push_request");
}

#[test]
fn register_answer_inputs() {
    replay("register_answer");
}

#[test]
fn service_config_inputs() {
    replay("service_config");
}

#[test]
fn connecting_event_inputs() {
    replay("connecting_event");
}

#[test]
fn core_module_inputs() {
    replay("core_module");
}

#[test]
fn http_answer_inputs() {
    replay("http_answer");
}

#[test]
fn cron_inputs() {
    replay("cron");
}

/// The header and query decoding of the `connecting_event` target does what
/// its documentation says, so the seeds mean what they look like.
#[test]
fn upgrade_inputs_decode_as_documented() {
    let upgrade = checks::decode_upgrade(
        b"GET /ws/chat?room=a&room=b HTTP/1.1\r\nHost: gw\r\nX-A: 1\r\nx-a:2\r\nBad Name: x\r\n\r\nconnection-id: c\"1\r\nsource-ip: ::1\r\n",
    );
    assert_eq!(upgrade.path, "/ws/chat");
    assert_eq!(upgrade.query.as_deref(), Some("room=a&room=b"));
    assert_eq!(upgrade.service, "chat");
    assert_eq!(upgrade.connection_id, "c\"1");
    assert_eq!(upgrade.source_ip.to_string(), "::1");
    assert_eq!(upgrade.headers.len(), 3);
    let fields = wasmgate::protocol::header_fields(&upgrade.headers);
    assert_eq!(fields["x-a"], "1, 2");
    assert_eq!(fields["host"], "gw");
    assert_eq!(
        wasmgate::protocol::query_fields(upgrade.query.as_deref())["room"],
        "b"
    );
}

/// Writes the seeds of the `core_module` target, which are binary:
/// `cargo test -p wasmgate --test fuzz_corpus -- --ignored write_core_module_seeds`.
/// Raw modules (first byte 0): the echo-wat handler, the handler world's
/// shape in both name manglings, modules that miss an export or import an
/// unknown function, a component, an empty module and bytes that are not
/// Wasm. wasm-smith inputs (first byte 1, 2 or 3): fixed pseudo-random bytes
/// of several lengths. Prints how many of them wrap.
#[test]
#[ignore = "writes fuzz/seeds/core_module; run by hand"]
fn write_core_module_seeds() {
    let folder = fuzz_dir().join("seeds/core_module");
    fs::create_dir_all(&folder).unwrap();
    let raw = |module: &[u8]| [&[0u8][..], module].concat();
    let wat = |text: &str| raw(&wat::parse_str(text).unwrap());
    let echo = fs::read_to_string(fuzz_dir().join("../plugins/echo-wat/handler.wat")).unwrap();
    let [legacy, standard] = checks::handler_shapes().clone();
    let mut seeds: Vec<(String, Vec<u8>)> = vec![
        ("raw-echo-wat".into(), wat(&echo)),
        ("raw-handler-shape-legacy".into(), raw(&legacy)),
        ("raw-handler-shape-standard".into(), raw(&standard)),
        (
            "raw-no-handle".into(),
            wat(r#"(module (memory (export "memory") 1))"#),
        ),
        (
            "raw-unknown-import".into(),
            wat(
                r#"(module (import "wasmgate:gateway/host@0.1.0" "teleport" (func)) (memory (export "memory") 1))"#,
            ),
        ),
        ("raw-component".into(), wat("(component)")),
        ("raw-empty-module".into(), raw(b"\0asm\x01\0\0\0")),
        ("raw-not-wasm".into(), raw(b"not wasm at all")),
    ];
    // xorshift64: the same bytes every time.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut random = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    for mode in 1u8..=3 {
        for len in [64, 512, 4096] {
            seeds.push((
                format!("smith-mode{mode}-{len}"),
                [vec![mode], random(len)].concat(),
            ));
        }
    }
    for (name, data) in &seeds {
        let module = checks::decode_core_module(data);
        let wraps = module
            .as_deref()
            .map(|module| wasmgate::wasm::core_module::wrap(module).is_ok());
        println!("{name}: {} bytes, wraps: {wraps:?}", data.len());
        fs::write(folder.join(name), data).unwrap();
    }
}
