use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use wasmgate_tests::*;

#[tokio::test]
async fn a_hand_written_core_module_is_wrapped_and_echoes() {
    let gateway = TestGateway::start(&[ServiceSpec::new("echo-wat").handler("echo-wat")]).await;
    echoes_everything(&gateway, "echo-wat").await;
}

#[tokio::test]
async fn the_rust_component_echoes() {
    let gateway = TestGateway::start(&[ServiceSpec::new("echo").handler("echo")]).await;
    echoes_everything(&gateway, "echo").await;
}

#[tokio::test]
async fn a_core_module_that_does_not_fit_is_rejected_naming_what_is_missing() {
    let gateway = TestGateway::start(&[ServiceSpec::new("misfit").handler("echo")]).await;
    let module = wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) i32.const 0))"#).unwrap();
    let dir = gateway.plugins.path().join("misfit");
    install(&dir, "handler.wasm", &module);
    let lines = wait_for_log(
        &[
            "handler rejected",
            "service=misfit",
            "does not fit the wasmgate:gateway/handler world",
        ],
        1,
    )
    .await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("handle"),
        "the missing export is named: {}",
        lines[0]
    );
    // The previous version keeps serving.
    let mut client = gateway.connect("misfit").await;
    assert_eq!(ask(&mut client, "still echo").await, "still echo");
}

#[tokio::test]
async fn the_c_component_echoes() {
    let gateway = TestGateway::start(&[ServiceSpec::new("echo-c").handler("echo-c")]).await;
    echoes_everything(&gateway, "echo-c").await;
}

#[tokio::test]
async fn the_zig_core_module_is_wrapped_and_echoes() {
    let gateway = TestGateway::start(&[ServiceSpec::new("echo-zig").handler("echo-zig")]).await;
    echoes_everything(&gateway, "echo-zig").await;
}

#[tokio::test]
async fn the_go_core_module_is_wrapped_and_echoes() {
    let gateway = TestGateway::start(&[ServiceSpec::new("echo-go").handler("echo-go")]).await;
    echoes_everything(&gateway, "echo-go").await;
}

/// Go's collector asks WASI for the time when it starts, which a component
/// may not do while the gateway copies strings in through `cabi_realloc`:
/// the helper keeps the collector off there. Many messages, up to 150 KiB,
/// each answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_helper_answers_many_large_messages() {
    let gateway = TestGateway::start(&[ServiceSpec::new("go-large").handler("echo-go")]).await;
    let mut client = gateway.connect("go-large").await;
    for i in 0..40usize {
        let size = if i % 4 == 0 {
            150 * 1024
        } else {
            16 * 1024 + i
        };
        let text: String = std::iter::repeat_n(char::from(b'a' + (i % 26) as u8), size).collect();
        assert_eq!(ask(&mut client, &text).await, text, "message {i}");
    }
    assert_eq!(ask(&mut client, "/count").await, "count 1");
}

/// A panic in a Go handler fails that call with the panic's text, never
/// the gateway: the connection is closed with 1011 and the log names the
/// service and the panic; the next client is served.
#[tokio::test]
async fn a_go_handler_that_panics_fails_only_its_call() {
    let gateway = TestGateway::start(&[ServiceSpec::new("go-panics").handler("echo-go")]).await;
    let mut client = gateway.connect("go-panics").await;
    client.send(Message::text("/panic")).await.unwrap();
    assert_eq!(close_code(&mut client).await, Some(1011));
    wait_for_log(&["service=go-panics", "panic: asked to panic"], 1).await;
    let mut next = gateway.connect("go-panics").await;
    assert_eq!(ask(&mut next, "after").await, "after");
}

#[tokio::test]
async fn the_assemblyscript_core_module_is_wrapped_and_echoes() {
    let gateway = TestGateway::start(&[ServiceSpec::new("echo-as").handler("echo-as")]).await;
    echoes_everything(&gateway, "echo-as").await;
}

/// Text that the event JSON carries with escapes (quotes, backslashes,
/// control characters) comes back unchanged from the helpers' JSON readers.
#[tokio::test]
async fn the_compiled_language_helpers_decode_json_escapes() {
    let services = ["echo-c", "echo-zig", "echo-as", "echo-go"];
    let specs: Vec<ServiceSpec> = services
        .iter()
        .map(|name| ServiceSpec::new(name).handler(name))
        .collect();
    let gateway = TestGateway::start(&specs).await;
    let text = "say \"hi\" \\ back\\slash\n\ttab \u{1}\u{1f} ctrl / 😀 ünï";
    for service in services {
        let mut client = gateway.connect(service).await;
        assert_eq!(ask(&mut client, text).await, text, "{service}");
        assert_eq!(ask(&mut client, "").await, "", "{service}: empty text");
        client
            .send(Message::binary(Vec::<u8>::new()))
            .await
            .unwrap();
        assert_eq!(
            next_message(&mut client).await,
            Message::binary(Vec::<u8>::new()),
            "{service}: empty binary"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_module_importing_wasi_preview1_loads_as_built_and_serves() {
    // The hand-written echo, plus a WASI preview-1 import (as wasi-libc,
    // Go's wasip1 and Zig builds have): the gateway wraps it with the
    // preview-1 adapter itself, no componentize step.
    let echo = include_str!("../plugins/echo-wat/handler.wat");
    let with_wasi = echo.replacen(
        "(memory (export \"memory\") 1)",
        "(import \"wasi_snapshot_preview1\" \"random_get\" (func (param i32 i32) (result i32)))\n  (memory (export \"memory\") 1)",
        1,
    );
    assert_ne!(with_wasi, echo);
    let gateway =
        TestGateway::start(&[ServiceSpec::new("wasi-p1-core")
            .bytes("handler.wasm", wat::parse_str(&with_wasi).unwrap())])
        .await;
    echoes_everything(&gateway, "wasi-p1-core").await;
    gateway.shutdown().await;
}

/// The C helper's key-value store and groups, through a real gateway.
#[tokio::test]
async fn the_c_helper_reaches_kv_and_groups() {
    let gateway = TestGateway::start(&[ServiceSpec::new("c-state").handler("echo-c")]).await;
    state_commands_work(
        &gateway,
        "c-state",
        &[
            ("/keys keys/", "1 keys, keys/a=1"),
            ("/join ", "result:2406"),
        ],
    )
    .await;
}

/// The Go helper's key-value store and groups, through a real gateway.
#[tokio::test]
async fn the_go_helper_reaches_kv_and_groups() {
    let gateway = TestGateway::start(&[ServiceSpec::new("go-state").handler("echo-go")]).await;
    state_commands_work(
        &gateway,
        "go-state",
        &[("/value k", "k=1 deleted=true"), ("/join ", "result:2406")],
    )
    .await;
}

/// The Zig helper's key-value store and groups, through a real gateway.
#[tokio::test]
async fn the_zig_helper_reaches_kv_and_groups() {
    let gateway = TestGateway::start(&[ServiceSpec::new("zig-state").handler("echo-zig")]).await;
    state_commands_work(
        &gateway,
        "zig-state",
        &[("/value k", "k=1 deleted=true"), ("/join ", "result:2406")],
    )
    .await;
}

/// The AssemblyScript helper's key-value store and groups, through a real
/// gateway.
#[tokio::test]
async fn the_assemblyscript_helper_reaches_kv_and_groups() {
    let gateway = TestGateway::start(&[ServiceSpec::new("as-state").handler("echo-as")]).await;
    state_commands_work(
        &gateway,
        "as-state",
        &[("/value k", "k=1 deleted=true"), ("/join ", "result:2406")],
    )
    .await;
}

/// A module whose `cabi_realloc` only works once its runtime is set up in
/// `_initialize`, which itself makes a WASI call (as Go's does): the
/// wrapped component runs `_initialize` before the gateway copies any
/// string in, and the adapter serves the WASI call during it.
#[tokio::test]
async fn a_preview1_module_whose_allocator_needs_initialize_loads() {
    let echo = include_str!("../plugins/echo-wat/handler.wat");
    let module = echo
        .replacen(
            "(memory (export \"memory\") 1)",
            "(import \"wasi_snapshot_preview1\" \"fd_write\" (func $fd_write (param i32 i32 i32 i32) (result i32)))\n  \
             (memory (export \"memory\") 1)\n  \
             (global $ready (mut i32) (i32.const 0))\n  \
             (func (export \"_initialize\")\n    \
               (i32.store (i32.const 200) (i32.const 300))\n    \
               (i32.store (i32.const 204) (i32.const 2))\n    \
               (i32.store16 (i32.const 300) (i32.const 0x6968))\n    \
               (drop (call $fd_write (i32.const 1) (i32.const 200) (i32.const 1) (i32.const 208)))\n    \
               (global.set $ready (i32.const 1)))",
            1,
        )
        .replacen(
            "(local $needed i32)",
            "(local $needed i32)\n    (if (i32.eqz (global.get $ready)) (then unreachable))",
            1,
        );
    assert_eq!(module.matches("$ready").count(), 3, "{module}");
    let gateway =
        TestGateway::start(&[ServiceSpec::new("wasi-p1-init")
            .bytes("handler.wasm", wat::parse_str(&module).unwrap())])
        .await;
    echoes_everything(&gateway, "wasi-p1-init").await;
    gateway.shutdown().await;
}

/// The Go helper's HTTP trigger: the integration request read (path, query,
/// a binary body) and answered with repeated headers; a POST that
/// broadcasts to WebSocket clients; a timer that reaches them.
#[tokio::test]
async fn the_go_helper_answers_http_requests_and_timers() {
    let gateway = TestGateway::start(&[ServiceSpec::new("go-web")
        .handler("echo-go")
        .toml("[[timers]]\nname = \"everySecond\"\ncron = \"* * * * * * *\"\nmessage = \"hi\"")])
    .await;

    let answer = http()
        .post(gateway.url("/http/go-web/any/path?q=a&q=b"))
        .body(vec![0xff_u8, 0x00, 0x80, b'x'])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(answer.headers()["x-echo-path"], "/any/path");
    let queries: Vec<_> = answer.headers().get_all("x-query").iter().collect();
    assert_eq!(queries, ["a", "b"]);
    assert_eq!(
        answer.bytes().await.unwrap().as_ref(),
        [0xff_u8, 0x00, 0x80, b'x']
    );

    let mut client = gateway.connect("go-web").await;
    client.send(Message::text("/join room")).await.unwrap();
    assert_eq!(next_text(&mut client).await, "joined room");
    let answer = http()
        .post(gateway.url("/http/go-web/say/room"))
        .body("hello from REST")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["delivered"], 1);
    assert_eq!(next_text(&mut client).await, "hello from REST");

    client.send(Message::text("/join ticks")).await.unwrap();
    // A tick may come before the join's own answer.
    let mut ticks = Vec::new();
    while ticks.len() < 2 {
        let text = next_text(&mut client).await;
        if text != "joined ticks" {
            ticks.push(text);
        }
    }
    let (first, second) = (&ticks[0], &ticks[1]);
    for tick in [first, second] {
        let parts: Vec<&str> = tick.split(' ').collect();
        assert_eq!(parts[..2], ["tick", "everySecond"], "{tick}");
        assert_eq!(parts[3], "hi", "{tick}");
    }
    assert_ne!(first, second, "one tick came twice");
    gateway.shutdown().await;
}

/// Text of `size` bytes that differs from message to message.
fn filler(size: usize, seed: usize) -> String {
    (0..size)
        .map(|j| char::from(b'a' + ((j / 7 + seed) % 26) as u8))
        .collect()
}

/// Events up to the service's `max_message_bytes` (here 1 MiB) reach a Go
/// handler and come back whole: copying them in grows Go's heap inside
/// `cabi_realloc`, which must not run into memory the WASI adapter holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_helper_echoes_messages_up_to_the_maximum_size() {
    let gateway = TestGateway::start(&[ServiceSpec::new("go-huge")
        .handler("echo-go")
        .toml("max_message_bytes = 1048576")])
    .await;
    let mut client = gateway.connect("go-huge").await;
    for (i, size) in [200 << 10, 512 << 10, 1000 << 10, (1 << 20) - 64]
        .into_iter()
        .enumerate()
    {
        let text = filler(size, i);
        assert_eq!(ask(&mut client, &text).await, text, "{size} bytes");
    }
    let binary: Vec<u8> = (0..1usize << 20).map(|j| (j * 31 % 251) as u8).collect();
    client.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(next_message(&mut client).await, Message::binary(binary));
    assert_eq!(ask(&mut client, "/count").await, "count 1");
}

/// One Go instance serves a long run of events (`instance_reuse`), 64 MiB
/// in all, of sizes up to 1 MiB, each answered whole; a host call still
/// works at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_go_instance_survives_many_mib_of_traffic() {
    let gateway = TestGateway::start(&[ServiceSpec::new("go-reused")
        .handler("echo-go")
        .toml("instance_reuse = 100000\nmax_message_bytes = 1048576")])
    .await;
    let mut client = gateway.connect("go-reused").await;
    let mut total = 0usize;
    let mut i = 0usize;
    while total < 64 << 20 {
        let size = match i % 4 {
            0 => 1 << 20,
            1 => 300 << 10,
            2 => 40 << 10 | i,
            _ => 700 << 10,
        };
        let text = filler(size, i);
        assert_eq!(ask(&mut client, &text).await, text, "message {i}");
        total += size;
        i += 1;
    }
    assert_eq!(ask(&mut client, "/count").await, "count 1");
}
