use wasmgate_tests::*;

#[tokio::test]
async fn a_handler_sees_no_files_network_or_host_environment() {
    let gateway = TestGateway::start(&[ServiceSpec::new("probe").handler("probe")]).await;
    let mut client = gateway.connect("probe").await;
    assert_eq!(ask(&mut client, "fs").await, "denied");
    assert_eq!(ask(&mut client, "net").await, "denied");
    let env: serde_json::Value = serde_json::from_str(&ask(&mut client, "env").await).unwrap();
    assert_eq!(env, serde_json::json!({}), "the host environment leaked");
}

#[tokio::test]
async fn a_handler_sees_only_the_environment_its_service_grants() {
    let gateway = TestGateway::start(&[ServiceSpec::new("probe")
        .handler("probe")
        .toml("env = { GREETING = \"hello\" }")])
    .await;
    let mut client = gateway.connect("probe").await;
    let env: serde_json::Value = serde_json::from_str(&ask(&mut client, "env").await).unwrap();
    assert_eq!(env, serde_json::json!({"GREETING": "hello"}));
}

#[tokio::test]
async fn the_context_names_service_role_request_and_deadline() {
    let gateway = TestGateway::start(&[ServiceSpec::new("probe").handler("probe")]).await;
    let mut client = gateway.connect("probe").await;
    let first: serde_json::Value = serde_json::from_str(&ask(&mut client, "info").await).unwrap();
    let second: serde_json::Value = serde_json::from_str(&ask(&mut client, "info").await).unwrap();
    assert_eq!(first["service"], "probe");
    assert_eq!(first["role"], "transfer");
    assert_eq!(first["connectionId"], second["connectionId"]);
    assert_ne!(first["requestId"], second["requestId"]);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let deadline = first["deadlineMs"].as_u64().unwrap();
    assert!(
        deadline > now_ms - 60_000 && deadline < now_ms + 60_000,
        "{deadline} vs {now_ms}"
    );
}

#[tokio::test]
async fn handler_output_is_logged_with_service_role_request_and_connection() {
    let gateway = TestGateway::start(&[ServiceSpec::new("probe").handler("probe")]).await;
    let mut client = gateway.connect("probe").await;
    let id = connection_id(&mut client).await;
    assert_eq!(ask(&mut client, "stdout:marker-7f3a").await, "ok");
    let stdout = wait_for_log(&["marker-7f3a", "stream=stdout"], 1).await;
    assert_eq!(stdout.len(), 1, "{stdout:#?}");
    for line in [
        &stdout[0],
        &wait_for_log(&["marker-7f3a", "stream=stderr"], 1).await[0],
    ] {
        assert!(line.contains("service=probe"), "{line}");
        assert!(line.contains("role=transfer"), "{line}");
        assert!(line.contains("request_id="), "{line}");
        assert!(line.contains(&id), "{line}");
    }
}

/// A core-module handler that reports what a previous event may have left
/// in its memory: on each message it grows its memory by a page, sends back
/// the first 8 bytes of that new page and 8 bytes from a fixed address of
/// its initial memory (outside any data segment), then writes a marker to
/// both places.
const MEMORY_SNOOP: &str = r#"
(module
  (import "wasmgate:gateway/host@0.1.0" "push" (func $push (param i32 i32 i32 i32 i32 i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 16) "{\"errNo\":0,\"errMsg\":\"ok\"}")
  (data (i32.const 48) "{}")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $ptr) (local.get 3)))
    (local.get $ptr))
  (func (export "handle")
        (param $service_ptr i32) (param $service_len i32) (param $role i32)
        (param $request_ptr i32) (param $request_len i32)
        (param $connection_ptr i32) (param $connection_len i32)
        (param $deadline i64) (param $event_ptr i32) (param $event_len i32)
        (result i32)
    (local $page i32)
    (i32.store8 (i32.const 64) (i32.const 0))
    (i32.store offset=4 (i32.const 64) (i32.const 48))
    (i32.store offset=8 (i32.const 64) (i32.const 2))
    (if (i32.eqz (local.get $role))
      (then
        (i32.store offset=4 (i32.const 64) (i32.const 16))
        (i32.store offset=8 (i32.const 64) (i32.const 25))
        (return (i32.const 64))))
    (if (i32.ne (local.get $role) (i32.const 1)) (then (return (i32.const 64))))
    (local.set $page (i32.mul (memory.grow (i32.const 1)) (i32.const 65536)))
    ;; What is there now: the grown page, then the fixed address 0x18000.
    (i64.store (i32.const 256) (i64.load (local.get $page)))
    (i64.store (i32.const 264) (i64.load (i32.const 0x18000)))
    ;; Leave a marker for whoever comes next.
    (i64.store (local.get $page) (i64.const 0x5ec2e75ec2e75ec2))
    (i64.store (i32.const 0x18000) (i64.const 0x5ec2e75ec2e75ec2))
    ;; push(connection, binary 16 bytes at 256), result area at 128.
    (call $push (local.get $connection_ptr) (local.get $connection_len)
                (i32.const 1) (i32.const 256) (i32.const 16) (i32.const 128))
    (i32.const 64))
  (func (export "cabi_post_handle") (param i32)))
"#;

/// The 16 bytes the memory snoop sends back for one message.
async fn snoop(client: &mut Client) -> Vec<u8> {
    use futures_util::SinkExt;
    client
        .send(tokio_tungstenite::tungstenite::Message::Text("look".into()))
        .await
        .unwrap();
    match next_message(client).await {
        tokio_tungstenite::tungstenite::Message::Binary(bytes) => bytes.to_vec(),
        other => panic!("expected the snoop's binary answer, got {other:?}"),
    }
}

#[tokio::test]
async fn a_fresh_instance_never_sees_what_the_previous_event_left_in_memory() {
    let module = wat::parse_str(MEMORY_SNOOP).unwrap();
    let gateway = TestGateway::start(&[
        ServiceSpec::new("fresh").bytes("handler.wasm", module.clone()),
        ServiceSpec::new("reused")
            .bytes("handler.wasm", module)
            .toml("instance_reuse = 100"),
    ])
    .await;

    // Every event gets a freshly reset memory slot (most likely the very
    // slot the previous event used): neither the grown page nor the
    // initial memory holds the marker.
    let mut fresh = gateway.connect("fresh").await;
    for _ in 0..20 {
        assert_eq!(
            snoop(&mut fresh).await,
            [0u8; 16],
            "memory leaked between events"
        );
    }

    // The same handler with instance reuse does see its own marker in the
    // initial memory (a reused instance keeps its memory, as documented),
    // which shows the snoop would notice a leak.
    let mut reused = gateway.connect("reused").await;
    let first = snoop(&mut reused).await;
    let second = snoop(&mut reused).await;
    assert_eq!(first, [0u8; 16]);
    assert_eq!(&second[..8], [0u8; 8], "a grown page starts zeroed");
    assert_eq!(second[8..], 0x5ec2e75ec2e75ec2u64.to_le_bytes());
}
