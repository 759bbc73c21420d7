use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wasmgate_tests::*;

fn probe(toml: &str) -> ServiceSpec {
    ServiceSpec::new("probe").handler("probe").toml(toml)
}

/// Connects and expects an HTTP refusal; returns its status and JSON body.
async fn refused(gateway: &TestGateway, path: &str) -> (u16, serde_json::Value) {
    upgrade_refusal(&gateway.ws_url(path))
        .await
        .unwrap_or_else(|| panic!("{path}: the upgrade should have been refused"))
}

#[tokio::test]
async fn a_refusal_answers_403_with_the_handlers_message() {
    let gateway = TestGateway::start(&[probe("")]).await;
    let (status, body) = refused(&gateway, "/ws/probe?deny=not%20today").await;
    assert_eq!(status, 403);
    assert_eq!(body["errNo"], 4001);
    assert_eq!(body["errMsg"], "not today");
    let (_, listing) = get_json(&gateway.control_url("/push/probe")).await;
    assert!(listing["connections"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_failing_register_answers_503_and_no_connection_exists() {
    let gateway = TestGateway::start(&[ServiceSpec::new("failing-register")
        .handler("probe")
        .toml("timeout_ms = 300")])
    .await;
    for query in ["trap=1", "loop=1", "garbage=1"] {
        let (status, body) = refused(&gateway, &format!("/ws/failing-register?{query}")).await;
        assert_eq!(status, 503, "{query}");
        assert_eq!(body["errNo"], 2302, "{query}");
    }
    let (_, listing) = get_json(&gateway.control_url("/push/failing-register")).await;
    assert!(listing["connections"].as_array().unwrap().is_empty());
    // And the gateway keeps serving.
    let mut client = gateway.connect("failing-register").await;
    assert_eq!(ask(&mut client, "echo:ok").await, "ok");
    // Refused connections never reach cleanup: when the one accepted
    // connection ends, its cleanup is the service's only one.
    client.close(None).await.unwrap();
    let cleanups = wait_for_log(
        &["service=failing-register", "cleanup reason=", "stream=log"],
        1,
    )
    .await;
    assert_eq!(cleanups.len(), 1, "{cleanups:#?}");
    assert!(
        cleanups[0].contains("cleanup reason=client"),
        "{cleanups:#?}"
    );
}

#[tokio::test]
async fn register_sees_one_request_id_in_its_event_its_context_and_its_logs() {
    let gateway = TestGateway::start(&[ServiceSpec::new("single-id").handler("probe")]).await;
    let mut client = gateway.connect("single-id?event=1&ctx=1").await;
    let event: serde_json::Value = serde_json::from_str(&next_text(&mut client).await).unwrap();
    let context: serde_json::Value = serde_json::from_str(&next_text(&mut client).await).unwrap();
    assert_eq!(context["role"], "register");
    let id = event["requestContext"]["requestId"].as_str().unwrap();
    assert_eq!(context["requestId"], id, "event {event} context {context}");
    // The handler's own log line of that call carries the same id.
    let lines = wait_for_log(
        &[
            "service=single-id",
            "role=register",
            &format!("request_id={id}"),
        ],
        1,
    )
    .await;
    assert!(
        lines
            .iter()
            .any(|line| line.contains("wasmgate::handler: register ")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn the_sub_protocol_chosen_by_register_is_sent_back() {
    let gateway = TestGateway::start(&[probe("")]).await;
    let mut request = gateway.ws_url("/ws/probe").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "chat, binary".parse().unwrap());
    let (mut client, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    assert_eq!(ask(&mut client, "echo:x").await, "x");

    // Without the header, no sub-protocol is chosen.
    let (_, response) = tokio_tungstenite::connect_async(gateway.ws_url("/ws/probe"))
        .await
        .unwrap();
    assert!(response.headers().get("sec-websocket-protocol").is_none());
}

#[tokio::test]
async fn the_connecting_event_carries_headers_and_query() {
    let gateway = TestGateway::start(&[probe("")]).await;
    let mut request = gateway
        .ws_url("/ws/probe?event=1&token=abc%20def")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-team", "blue".parse().unwrap());
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "v2".parse().unwrap());
    let (mut client, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let event: serde_json::Value = serde_json::from_str(&next_text(&mut client).await).unwrap();
    let id = connection_id(&mut client).await;

    assert_eq!(event["requestContext"]["serviceName"], "probe");
    assert_eq!(event["requestContext"]["path"], "/ws/probe");
    assert_eq!(event["requestContext"]["httpMethod"], "GET");
    assert_eq!(event["requestContext"]["sourceIp"], "127.0.0.1");
    assert_eq!(event["requestContext"]["websocketEnable"], true);
    assert!(!event["requestContext"]["requestId"]
        .as_str()
        .unwrap()
        .is_empty());
    assert_eq!(event["websocket"]["action"], "connecting");
    assert_eq!(event["websocket"]["secConnectionID"], id);
    assert_eq!(event["websocket"]["secWebSocketProtocol"], "v2");
    assert!(
        event["websocket"].get("secWebSocketExtensions").is_none()
            || event["websocket"]["secWebSocketExtensions"].is_string()
    );
    assert_eq!(event["headers"]["x-team"], "blue");
    assert_eq!(event["queryString"]["token"], "abc def");
    assert_eq!(event["queryString"]["event"], "1");
}

#[tokio::test]
async fn a_push_from_register_arrives_right_after_the_upgrade() {
    let gateway = TestGateway::start(&[probe("")]).await;
    let mut client = gateway.connect("probe?push=welcome").await;
    assert_eq!(next_text(&mut client).await, "welcome");
    assert_eq!(ask(&mut client, "echo:next").await, "next");
}

#[tokio::test]
async fn a_service_without_register_accepts_and_without_transfer_drops() {
    let gateway = TestGateway::start(&[
        ServiceSpec::new("cleanup-only").file("cleanup.wasm", "probe"),
        ServiceSpec::new("transfer-only").file("transfer.wasm", "probe"),
    ])
    .await;
    // No register handler: accepted. No transfer handler: data dropped.
    let mut client = gateway.connect("cleanup-only").await;
    send_text(&mut client, "echo:dropped").await;
    let (_, listing) = get_json(&gateway.control_url("/push/cleanup-only")).await;
    let id = listing["connections"][0]["secConnectionID"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = post_push(&gateway, "cleanup-only", text_push(&id, "pushed")).await;
    assert_eq!(status, 200);
    // The pushed message is the first to arrive: the echo was dropped.
    assert_eq!(next_text(&mut client).await, "pushed");
    let warnings = wait_for_log(&["no transfer handler", "cleanup-only"], 1).await;
    assert_eq!(warnings.len(), 1);
    drop(client);
    // The cleanup role file runs.
    let cleanups = wait_for_log(&["cleanup reason=client", &id, "stream=log"], 1).await;
    assert_eq!(cleanups.len(), 1);

    // A role file serves only its role.
    let mut client = gateway.connect("transfer-only?deny=ignored").await;
    assert_eq!(ask(&mut client, "echo:served").await, "served");
}
