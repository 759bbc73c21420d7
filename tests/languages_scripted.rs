use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use wasmgate_tests::*;

/// The service's entry in `/admin/services`.
async fn admin(gateway: &TestGateway, service: &str) -> serde_json::Value {
    let (status, body) = get_json(&gateway.control_url("/admin/services")).await;
    assert_eq!(status, 200);
    body["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == service)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// Starts a gateway with `handler` as service `service` twice: the second
/// start must load the compiled component from the on-disk cache.
async fn start_from_cache(service: &str, handler: &str) -> TestGateway {
    let spec = [ServiceSpec::new(service).handler(handler)];
    // The first start compiles (or already finds it in the cache of an
    // earlier run); the second one must find it there.
    drop(TestGateway::start(&spec).await);
    let gateway = TestGateway::start(&spec).await;
    let loaded = admin(&gateway, service).await;
    assert_eq!(loaded["files"][0]["fromCache"], true, "{loaded}");
    gateway
}

#[tokio::test]
async fn the_python_component_echoes_and_loads_from_the_cache() {
    let _large = using_large_handlers().await;
    let gateway = start_from_cache("echo-python", "echo-python").await;
    echoes_everything(&gateway, "echo-python").await;
}

#[tokio::test]
async fn the_javascript_component_echoes_and_loads_from_the_cache() {
    let _large = using_large_handlers().await;
    let gateway = start_from_cache("echo-js", "echo-js").await;
    echoes_everything(&gateway, "echo-js").await;
}

#[tokio::test]
async fn the_seed_style_python_handler_answers_the_sub_protocol_and_echoes() {
    let _large = using_large_handlers().await;
    let gateway = TestGateway::start(&[ServiceSpec::new("seed").handler("seed-python")]).await;
    let mut request = gateway.ws_url("/ws/seed").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "chat, binary".parse().unwrap());
    let (mut client, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    assert_eq!(ask(&mut client, "grüße").await, "grüße");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    client.send(Message::binary(bytes.clone())).await.unwrap();
    assert_eq!(next_message(&mut client).await, Message::binary(bytes));

    // Without the header, no sub-protocol is chosen.
    let (mut client, response) = tokio_tungstenite::connect_async(gateway.ws_url("/ws/seed"))
        .await
        .unwrap();
    assert!(response.headers().get("sec-websocket-protocol").is_none());
    assert_eq!(ask(&mut client, "plain").await, "plain");

    // Through the API trigger, its integration-response sample, unchanged.
    let response = http()
        .get(gateway.url("/http/seed/index.html?from=test"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/html");
    let keys: Vec<&str> = response
        .headers()
        .get_all("key")
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    assert_eq!(keys, ["value1", "value2", "value3"]);
    assert_eq!(
        response.text().await.unwrap(),
        "<html><body><h1>Heading</h1><p>Paragraph.</p></body></html>"
    );
}

/// The counts a `counter` connection answers to `count` messages.
async fn counts(client: &mut Client, messages: usize) -> Vec<String> {
    let mut answers = Vec::new();
    for _ in 0..messages {
        answers.push(ask(client, "count").await);
    }
    answers
}

#[tokio::test]
async fn without_instance_reuse_every_event_gets_a_fresh_instance() {
    let gateway = TestGateway::start(&[ServiceSpec::new("fresh").handler("counter")]).await;
    let mut client = gateway.connect("fresh").await;
    assert_eq!(counts(&mut client, 3).await, ["1", "1", "1"]);
}

#[tokio::test]
async fn with_instance_reuse_an_instance_serves_n_events_then_is_replaced() {
    let gateway = TestGateway::start(&[ServiceSpec::new("reused")
        .handler("counter")
        .toml("instance_reuse = 3")])
    .await;
    // Register was the instance's first event.
    let mut client = gateway.connect("reused").await;
    assert_eq!(counts(&mut client, 6).await, ["2", "3", "1", "2", "3", "1"]);
}

#[tokio::test]
async fn reused_instances_never_cross_services() {
    let reuse = "instance_reuse = 100";
    let gateway = TestGateway::start(&[
        ServiceSpec::new("one").handler("counter").toml(reuse),
        ServiceSpec::new("two").handler("counter").toml(reuse),
    ])
    .await;
    let mut one = gateway.connect("one").await;
    assert_eq!(counts(&mut one, 2).await, ["2", "3"]);
    let mut two = gateway.connect("two").await;
    assert_eq!(counts(&mut two, 2).await, ["2", "3"]);
    assert_eq!(counts(&mut one, 1).await, ["4"]);
}

#[tokio::test]
async fn a_trap_retires_the_reused_instance() {
    let gateway = TestGateway::start(&[ServiceSpec::new("trapping")
        .handler("counter")
        .toml("instance_reuse = 100")])
    .await;
    let mut client = gateway.connect("trapping").await;
    assert_eq!(counts(&mut client, 2).await, ["2", "3"]);
    send_text(&mut client, "trap").await;
    // A failed transfer closes the connection.
    close_code(&mut client).await;
    // The trapped instance (4 events) is gone: the new connection's events
    // run on a fresh one (that may have served the first one's cleanup).
    let mut client = gateway.connect("trapping").await;
    let count: u32 = ask(&mut client, "count").await.parse().unwrap();
    assert!((2..=3).contains(&count), "count {count}");
}

#[tokio::test]
async fn the_python_component_echoes_with_instance_reuse() {
    let _large = using_large_handlers().await;
    let gateway = TestGateway::start(&[ServiceSpec::new("echo-python")
        .handler("echo-python")
        .toml("instance_reuse = 50")])
    .await;
    echoes_everything(&gateway, "echo-python").await;
    echoes_everything(&gateway, "echo-python").await;
}

#[tokio::test]
async fn the_javascript_component_echoes_with_instance_reuse() {
    let _large = using_large_handlers().await;
    let gateway = TestGateway::start(&[ServiceSpec::new("echo-js")
        .handler("echo-js")
        .toml("instance_reuse = 50")])
    .await;
    echoes_everything(&gateway, "echo-js").await;
    echoes_everything(&gateway, "echo-js").await;
}

#[tokio::test]
async fn a_hot_reload_starts_a_new_instance_pool() {
    let gateway = TestGateway::start(&[ServiceSpec::new("reloaded")
        .handler("counter")
        .toml("instance_reuse = 100")])
    .await;
    let mut client = gateway.connect("reloaded").await;
    assert_eq!(counts(&mut client, 2).await, ["2", "3"]);
    // The same handler with a custom section appended: a new version.
    let mut bytes = std::fs::read(wasm("counter")).unwrap();
    bytes.extend_from_slice(&[0, 6, 5, b'r', b'e', b'l', b'o', b'd']);
    install(
        &gateway.plugins.path().join("reloaded"),
        "handler.wasm",
        &bytes,
    );
    let loaded = wait_for_log(&["handler loaded", "service=reloaded"], 2).await;
    assert_eq!(loaded.len(), 2, "{loaded:#?}");
    assert_eq!(counts(&mut client, 2).await, ["1", "2"]);
}

/// The Python helper's key-value store and groups, through a real gateway.
#[tokio::test]
async fn the_python_helper_reaches_kv_and_groups() {
    let _large = using_large_handlers().await;
    let gateway = TestGateway::start(&[ServiceSpec::new("py-state").handler("echo-python")]).await;
    state_commands_work(
        &gateway,
        "py-state",
        &[("/tally poll/", "poll/a=1,poll/b=2")],
    )
    .await;
}

/// The JavaScript helper's key-value store and groups, through a real
/// gateway.
#[tokio::test]
async fn the_javascript_helper_reaches_kv_and_groups() {
    let _large = using_large_handlers().await;
    let gateway = TestGateway::start(&[ServiceSpec::new("js-state").handler("echo-js")]).await;
    state_commands_work(
        &gateway,
        "js-state",
        &[("/tally poll/", "poll/a=1,poll/b=2 deleted=true")],
    )
    .await;
}
