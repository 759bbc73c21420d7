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
