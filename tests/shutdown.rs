use wasmgate_tests::*;

#[tokio::test]
async fn shutdown_closes_every_connection_with_1001_and_runs_every_cleanup() {
    let gateway = TestGateway::start(&[
        ServiceSpec::new("probe").handler("probe"),
        ServiceSpec::new("second").handler("probe"),
    ])
    .await;
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for service in ["probe", "probe", "second"] {
        let mut client = gateway.connect(service).await;
        ids.push(connection_id(&mut client).await);
        clients.push(client);
    }
    let addr = gateway.addr;
    let waiters: Vec<_> = clients
        .into_iter()
        .map(|mut client| tokio::spawn(async move { close_code(&mut client).await }))
        .collect();
    gateway.shutdown().await;
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap(), Some(1001));
    }
    // Every cleanup ran exactly once, before run() returned.
    for id in &ids {
        let lines = log_lines(&["cleanup reason=shutdown", id, "stream=log"]);
        assert_eq!(lines.len(), 1, "{id}: {lines:#?}");
    }
    // And the listener is gone.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn an_upgrade_refused_by_shutdown_after_register_accepted_still_gets_its_cleanup() {
    let mut gateway = TestGateway::start(&[ServiceSpec::new("late").handler("probe")]).await;
    // Register takes a while; shutdown begins meanwhile, so the upgrade it
    // accepted is refused.
    let url = gateway.ws_url("/ws/late?slow=1500");
    let connecting = tokio::spawn(async move { upgrade_refusal(&url).await });
    // A connection is listed from the moment its register call starts.
    for _ in 0..200 {
        let (_, listing) = get_json(&gateway.control_url("/push/late")).await;
        if listing["connections"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    gateway.begin_shutdown();
    let (status, body) = connecting
        .await
        .unwrap()
        .expect("shutdown refuses the upgrade");
    assert_eq!((status, body["errNo"].as_i64()), (503, Some(2304)));
    gateway.shutdown().await;
    // Register accepted, so cleanup ran exactly once, before run() returned.
    let cleanups = log_lines(&["service=late", "cleanup reason=shutdown", "stream=log"]);
    assert_eq!(cleanups.len(), 1, "{cleanups:#?}");
}

#[tokio::test]
async fn invoke_runs_one_handler_once() {
    let event = serde_json::json!({
        "websocket": {"action": "data send", "secConnectionID": "abc", "dataType": "text", "data": "stdout:from invoke"}
    });
    let outcome = wasmgate::invoke(&wasm("probe"), &event.to_string(), "local", None)
        .await
        .unwrap();
    assert_eq!(outcome.result.unwrap(), "{}");
    let lines: Vec<_> = outcome.output.iter().map(|l| l.text.as_str()).collect();
    assert!(lines.contains(&"from invoke"), "{lines:?}");
    assert!(lines.contains(&"push abc text ok"), "{lines:?}");

    let refusal = serde_json::json!({
        "requestContext": {"serviceName": "local"},
        "websocket": {"action": "connecting", "secConnectionID": "abc"},
        "queryString": {"deny": "no"}
    });
    let outcome = wasmgate::invoke(&wasm("probe"), &refusal.to_string(), "local", None)
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_str(&outcome.result.unwrap()).unwrap();
    assert_eq!(answer["errNo"], 4001);

    let error = wasmgate::invoke(&wasm("probe"), "{}", "local", None)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("websocket.action"), "{error}");
}

/// `invoke --script`: a session of connects, messages and closes against a
/// real router, so a chat room works as in the gateway, and the transcript
/// shows what each client received.
#[tokio::test]
async fn invoke_script_runs_a_session_where_groups_work() {
    let script = serde_json::json!([
        {"connect": "alice", "query": {"room": "kitchen"}},
        {"connect": "bob", "query": {"room": "kitchen"}},
        {"connect": "carol", "query": {"room": "garden"}},
        {"send": "alice", "text": "tea?"},
        {"close": "bob"},
    ]);
    let transcript = wasmgate::invoke_script(&wasm("chat"), &script.to_string(), "chat", None)
        .await
        .unwrap();
    let text = transcript.join("\n");
    let position = |needle: &str| {
        transcript
            .iter()
            .position(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} missing from:\n{text}"))
    };
    // Bob hears Alice's message; Carol, in another room, does not.
    let sent = position("4. alice sends \"tea?\"");
    let heard = position("-> bob: \"tea?\"");
    assert!(heard > sent, "{text}");
    assert!(!text.contains("-> carol: \"tea?\""), "{text}");
    assert!(!text.contains("-> alice: \"tea?\""), "{text}");
    // Bob's cleanup tells the room; Alice hears it, Bob is gone.
    let closed = position("5. bob closes");
    assert!(
        transcript[closed..]
            .iter()
            .any(|line| line.starts_with("   -> alice: ") && line.contains("left")),
        "{text}"
    );

    // Steps that name no client fail with the step's number.
    let error = wasmgate::invoke_script(
        &wasm("chat"),
        r#"[{"send": "nobody", "text": "hi"}]"#,
        "chat",
        None,
    )
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("step 1: no connected client nobody"),
        "{error}"
    );
}

/// `--state FILE` keeps what a handler stores from one invoke to the next.
#[tokio::test]
async fn invoke_with_a_state_file_keeps_what_a_call_stored() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.redb");
    let event = |command: &str| {
        serde_json::json!({
            "websocket": {"action": "data send", "secConnectionID": "abc", "dataType": "text", "data": command}
        })
        .to_string()
    };
    let outcome = wasmgate::invoke(
        &wasm("probe"),
        &event("kv-set:colour=blue"),
        "local",
        Some(&state),
    )
    .await
    .unwrap();
    outcome.result.unwrap();
    let outcome = wasmgate::invoke(
        &wasm("probe"),
        &event("kv-get:colour"),
        "local",
        Some(&state),
    )
    .await
    .unwrap();
    let lines: Vec<_> = outcome.output.iter().map(|l| l.text.as_str()).collect();
    assert!(lines.contains(&"push abc text value:blue"), "{lines:?}");
}
