//! Criterion benchmarks of the per-event path for the Rust echo handler:
//! event JSON build, instantiation from `InstancePre` in the pooling
//! allocator, the transfer call (with its push host call), the register
//! answer parse, a reverse push, and the whole event end to end, each with
//! the gateway's limits on. Instance reuse is measured beside the default.
//!
//! ```text
//! scripts/bench-per-event.sh          # builds the echo handler, then runs this
//! ECHO_WASM=path/to/echo.wasm cargo bench -p wasmgate --bench per_event
//! ```

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use wasmgate::stages::PerEvent;

const TEXT: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn echo_wasm() -> Vec<u8> {
    let path = std::env::var_os("ECHO_WASM").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/wasm/echo.wasm"),
        PathBuf::from,
    );
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the echo handler at {} ({e}); build it with \
             `cargo build -p echo --target wasm32-wasip2 --profile wasm` or run \
             scripts/bench-per-event.sh",
            path.display()
        )
    })
}

fn per_event(c: &mut Criterion) {
    let wasm = echo_wasm();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut fresh = PerEvent::new(&wasm, 0).expect("load the echo handler");
    let mut reused = PerEvent::new(&wasm, 1000).expect("load the echo handler");
    // Check once that the path really echoes before timing it.
    for bench in [&mut fresh, &mut reused] {
        let pushed = rt.block_on(bench.event(TEXT)).expect("echo call");
        assert_eq!(pushed, 1, "the echo handler pushes one message per event");
    }
    let push_body = format!(
        r#"{{"websocket":{{"action":"data send","secConnectionID":"{}","dataType":"text","data":"{TEXT}"}}}}"#,
        fresh.connection_id()
    );
    let answer = r#"{"errNo":0,"errMsg":"ok","websocket":{"secWebSocketProtocol":"chat"}}"#;

    let mut group = c.benchmark_group("per_event");
    group.bench_function("build_event", |b| b.iter(|| fresh.build_event(TEXT)));
    group.bench_function("instantiate", |b| {
        b.iter(|| rt.block_on(fresh.instantiate()).expect("instantiate"))
    });
    group.bench_function("call_fresh", |b| {
        b.iter(|| {
            let answer = rt.block_on(fresh.call(fresh.build_event(TEXT)));
            fresh.drain();
            answer.expect("call")
        })
    });
    group.bench_function("call_reused", |b| {
        b.iter(|| {
            let answer = rt.block_on(reused.call(reused.build_event(TEXT)));
            reused.drain();
            answer.expect("call")
        })
    });
    group.bench_function("parse_answer", |b| {
        b.iter(|| PerEvent::parse_answer(answer).expect("parse"))
    });
    group.bench_function("push", |b| {
        b.iter(|| rt.block_on(fresh.push(push_body.as_bytes())).expect("push"))
    });
    group.bench_function("event_fresh", |b| {
        b.iter(|| rt.block_on(fresh.event(TEXT)).expect("event"))
    });
    group.bench_function("event_reused", |b| {
        b.iter(|| rt.block_on(reused.event(TEXT)).expect("event"))
    });
    group.finish();
}

criterion_group!(benches, per_event);
criterion_main!(benches);
