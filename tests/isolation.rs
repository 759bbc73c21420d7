//! Shared resources a hostile tenant reaches for: the instance pool, the
//! gateway's call slots and its memory. In each test the attacker fails
//! alone and a victim service keeps serving.

use std::time::Duration;

use wasmgate_tests::*;

const ECHO_WAT: &str = include_str!("../plugins/echo-wat/handler.wat");

/// The hand-written echo core module, wrapped into a component.
fn echo_component() -> Vec<u8> {
    let module = wat::parse_str(ECHO_WAT).unwrap();
    wasmgate::wasm::core_module::wrap(&module).unwrap()
}

/// The echo handler whose transfer spins forever (until its time-out).
fn spinner() -> Vec<u8> {
    let call =
        "(call $route (local.get $event_ptr) (local.get $event_len) (global.get $route_result))";
    assert!(ECHO_WAT.contains(call));
    wat::parse_str(ECHO_WAT.replace(call, "(loop $spin (br $spin))")).unwrap()
}

/// Reads an unsigned LEB128 at `at`; returns it and the offset after it.
fn leb(bytes: &[u8], mut at: usize) -> (usize, usize) {
    let (mut value, mut shift) = (0usize, 0);
    loop {
        let byte = bytes[at];
        at += 1;
        value |= usize::from(byte & 0x7f) << shift;
        shift += 7;
        if byte < 0x80 {
            return (value, at);
        }
    }
}

fn leb_bytes(mut value: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn section(id: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![id];
    out.extend(leb_bytes(body.len()));
    out.extend_from_slice(body);
    out
}

/// `component` with `extra` more core modules, each defining one memory and
/// instantiated once: a valid handler with more memories than one
/// component may have.
fn with_extra_memories(component: &[u8], extra: usize) -> Vec<u8> {
    // Core modules already defined at the top level (section 1).
    let mut modules = 0;
    let mut at = 8;
    while at < component.len() {
        let id = component[at];
        let (size, body) = leb(component, at + 1);
        if id == 1 {
            modules += 1;
        }
        at = body + size;
    }
    let memory_module = wat::parse_str("(module (memory 1))").unwrap();
    let mut out = component.to_vec();
    for n in 0..extra {
        out.extend(section(1, &memory_module));
        // One core instance: instantiate module `modules + n` with no arguments.
        let mut instance = leb_bytes(1);
        instance.push(0x00);
        instance.extend(leb_bytes(modules + n));
        instance.extend(leb_bytes(0));
        out.extend(section(2, &instance));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_over_the_pools_per_component_maxima_is_refused_at_load() {
    let gateway = TestGateway::start(&[
        ServiceSpec::new("pool-victim").handler("echo"),
        ServiceSpec::new("pool-memories")
            .bytes("handler.wasm", with_extra_memories(&echo_component(), 3)),
        // Within the maxima: the same construction loads and serves.
        ServiceSpec::new("pool-fits")
            .bytes("handler.wasm", with_extra_memories(&echo_component(), 1)),
    ])
    .await;
    let lines = wait_for_log(&["handler rejected", "service=pool-memories"], 1).await;
    assert!(
        lines[0].contains("4 Wasm linear memories, which exceeds the configured maximum of 2"),
        "{}",
        lines[0]
    );
    let (status, body) = upgrade_refusal(&gateway.ws_url("/ws/pool-memories"))
        .await
        .expect("refused");
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        ask(&mut gateway.connect("pool-fits").await, "hi").await,
        "hi"
    );
    echoes_everything(&gateway, "pool-victim").await;
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_spinning_in_every_call_it_may_run_leaves_slots_for_another() {
    // 8 slots: a reserve of 1 and 7 outside it. The spinner, the only
    // active service at first, may take all 7 (its own cap, 8, would let
    // it take the reserve too); its later calls wait.
    let gateway = TestGateway::start_with(
        &[
            ServiceSpec::new("slots-victim").handler("echo"),
            ServiceSpec::new("slots-spinner")
                .bytes("handler.wasm", spinner())
                .toml("timeout_ms = 20000\nmax_concurrency = 8\n"),
        ],
        |config| config.max_concurrency = 8,
    )
    .await;
    // Twelve clients of the spinner, each spinning once connected. Its
    // register calls need slots too: beyond its share they wait, as its
    // transfers would.
    let spinners: Vec<_> = (0..12)
        .map(|_| {
            let url = gateway.ws_url("/ws/slots-spinner");
            tokio::spawn(async move {
                if let Ok((mut client, _)) = tokio_tungstenite::connect_async(url).await {
                    send_text(&mut client, "spin").await;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    drop(client);
                }
            })
        })
        .collect();
    // Let the spinner take every slot it may: more of its clients are in
    // than the 7 slots outside the reserve (without the reserve they would
    // hold all 8). Waited for, not timed: a busy machine connects slowly.
    let _ = wait_for_log(&["service=slots-spinner", "connection opened"], 8).await;
    let spinning = log_lines(&["service=slots-spinner", "connection opened"]).len();
    assert!(spinning >= 8, "only {spinning} spinner clients connected");
    // The victim's calls find a slot at once, on the reserve, although the
    // spinner keeps all it may take, and the spinner's waiting calls do not
    // take the reserve slot back between them.
    let mut victims = Vec::new();
    for _ in 0..2 {
        victims.push(gateway.connect("slots-victim").await);
    }
    for (n, victim) in victims.iter_mut().enumerate() {
        assert_eq!(
            ask(victim, &format!("still here {n}")).await,
            format!("still here {n}")
        );
    }
    for spinner in spinners {
        spinner.abort();
    }
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bombs_stop_at_the_gateways_budget_and_the_gateway_serves_on() {
    let _memory = measuring_memory().await;
    // The bomber may take 96 MiB by its own limit, but all handlers of the
    // gateway together get only 64 MiB; another bomber's own limit is 16.
    let gateway = TestGateway::start_with(
        &[
            ServiceSpec::new("budget-victim").handler("echo"),
            ServiceSpec::new("budget-bomber")
                .handler("hostile")
                .toml("memory_limit_mb = 96\n"),
            ServiceSpec::new("budget-small-bomber")
                .handler("hostile")
                .toml("memory_limit_mb = 16\n"),
        ],
        |config| config.memory_budget_bytes = 64 << 20,
    )
    .await;
    for round in 0..3 {
        let mut bomb = gateway.connect("budget-bomber").await;
        send_text(&mut bomb, "bomb").await;
        // Stopped by the gateway's budget: the gateway's doing, 1013.
        assert_eq!(close_code(&mut bomb).await, Some(1013), "round {round}");
        // The memory came back: the victim serves after every bomb.
        echoes_everything(&gateway, "budget-victim").await;
    }
    let lines = log_lines(&[
        "service=budget-bomber",
        "gateway's memory budget for handlers is used up",
    ]);
    assert_eq!(lines.len(), 3, "{lines:?}");
    // Below the budget, a service's own limit still applies, to the total
    // of its memories and tables.
    let mut small = gateway.connect("budget-small-bomber").await;
    send_text(&mut small, "bomb").await;
    assert_eq!(close_code(&mut small).await, Some(1011));
    wait_for_log(
        &[
            "service=budget-small-bomber",
            "exceeded its memory limit of 16777216 bytes",
        ],
        1,
    )
    .await;
    gateway.shutdown().await;
}
