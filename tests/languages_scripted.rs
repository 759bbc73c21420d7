use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use wasmgate_tests::*;

/// Text (ASCII, non-ASCII, several KiB) comes back as text and binary as binary.
async fn echoes_everything(gateway: &TestGateway, service: &str) {
    let mut client = gateway.connect(service).await;
    for text in [
        "hello".to_owned(),
        "grüße, 世界 🌍".to_owned(),
        "0123456789abcdef".repeat(512),
    ] {
        assert_eq!(ask(&mut client, &text).await, text, "{service}");
    }
    let bytes: Vec<u8> = (0..=255u8).cycle().take(6000).collect();
    client.send(Message::binary(bytes.clone())).await.unwrap();
    assert_eq!(
        next_message(&mut client).await,
        Message::binary(bytes),
        "{service}"
    );
}

/// The service's entry in `/admin/services`.
async fn admin(gateway: &TestGateway, service: &str) -> serde_json::Value {
    let (status, body) = get_json(&gateway.url("/admin/services")).await;
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
    let gateway = start_from_cache("echo-python", "echo-python").await;
    echoes_everything(&gateway, "echo-python").await;
}

#[tokio::test]
async fn the_javascript_component_echoes_and_loads_from_the_cache() {
    let gateway = start_from_cache("echo-js", "echo-js").await;
    echoes_everything(&gateway, "echo-js").await;
}

#[tokio::test]
async fn the_seed_style_python_handler_answers_the_sub_protocol_and_echoes() {
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
}
