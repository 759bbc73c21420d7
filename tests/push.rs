use tokio_tungstenite::tungstenite::Message;
use wasmgate_tests::*;

const TOKEN: &str = "s3cret-token-0123456789";

fn services() -> Vec<ServiceSpec> {
    vec![
        ServiceSpec::new("probe").handler("probe"),
        ServiceSpec::new("other").handler("probe"),
        ServiceSpec::new("locked")
            .handler("probe")
            .toml(&format!("push_token = \"{TOKEN}\"")),
    ]
}

#[tokio::test]
async fn push_and_close_with_an_id_from_the_listing() {
    let gateway = TestGateway::start(&services()).await;
    let mut client = gateway.connect("probe").await;
    let id = connection_id(&mut client).await;

    let (status, listing) = get_json(&gateway.control_url("/push/probe")).await;
    assert_eq!(status, 200);
    let connections = listing["connections"].as_array().unwrap();
    assert_eq!(connections.len(), 1);
    assert_eq!(connections[0]["secConnectionID"], id);
    assert_eq!(connections[0]["sourceIp"], "127.0.0.1");
    assert!(connections[0]["connectedAt"].as_u64().unwrap() > 0);
    assert!(
        connections[0]["lastActiveAt"].as_u64().unwrap()
            >= connections[0]["connectedAt"].as_u64().unwrap()
    );

    let info_url = gateway.control_url(&format!(
        "/push/probe/{}",
        id.replace('/', "%2F").replace('+', "%2B")
    ));
    let (status, info) = get_json(&info_url).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["connection"]["secConnectionID"], id);

    let (status, answer) = post_push(&gateway, "probe", text_push(&id, "from the backend")).await;
    assert_eq!(
        (status, answer["errNo"].as_i64()),
        (200, Some(0)),
        "{answer}"
    );
    assert_eq!(next_text(&mut client).await, "from the backend");

    let binary = serde_json::json!({"websocket": {"action": "data send", "secConnectionID": id, "dataType": "binary", "data": "AP8B"}});
    let (status, _) = post_push(&gateway, "probe", binary.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(
        next_message(&mut client).await,
        Message::binary(vec![0, 255, 1])
    );

    let (status, _) = post_push(&gateway, "probe", close_push(&id)).await;
    assert_eq!(status, 200);
    assert_eq!(close_code(&mut client).await, Some(1000));
    let cleanups = wait_for_log(&["cleanup reason=server", &id, "stream=log"], 1).await;
    assert_eq!(cleanups.len(), 1, "{cleanups:#?}");

    // The connection is gone: pushing to it again is "not found".
    let (status, answer) = post_push(&gateway, "probe", text_push(&id, "late")).await;
    assert_eq!((status, answer["errNo"].as_i64()), (404, Some(2202)));
    let (status, answer) = get_json(&info_url).await;
    assert_eq!((status, answer["errNo"].as_i64()), (404, Some(2202)));
}

#[tokio::test]
async fn every_malformed_push_is_named_and_delivers_nothing() {
    let gateway = TestGateway::start(&services()).await;
    let mut client = gateway.connect("probe").await;
    let id = connection_id(&mut client).await;
    let cases = [
        ("{not json".to_owned(), 400, 2001),
        (r#"{"websocket":{"action":"data send","data":"x"}}"#.to_owned(), 400, 2002),
        (r#"{"nothing":1}"#.to_owned(), 400, 2002),
        (serde_json::json!({"websocket":{"action":"dance","secConnectionID":id}}).to_string(), 400, 2003),
        (serde_json::json!({"websocket":{"action":"data send","secConnectionID":id,"dataType":"binary","data":"%%%"}}).to_string(), 400, 2004),
        (serde_json::json!({"websocket":{"action":"data send","secConnectionID":id,"dataType":"xml","data":"x"}}).to_string(), 400, 2005),
        (serde_json::json!({"websocket":{"action":"data send","secConnectionID":id,"dataType":"text"}}).to_string(), 400, 2002),
        (text_push("AAAAAAAAAAAAAAAAAAAAAA==", "x"), 404, 2202),
        (text_push(&id, &"x".repeat(300 * 1024)), 413, 2006),
    ];
    for (body, status, err_no) in cases {
        let (got_status, answer) = post_push(&gateway, "probe", body.clone()).await;
        assert_eq!(
            (got_status, answer["errNo"].as_i64()),
            (status, Some(err_no)),
            "{body:.120} -> {answer}"
        );
        assert!(!answer["errMsg"].as_str().unwrap().is_empty());
    }
    // Unknown service.
    let (status, answer) = post_push(&gateway, "nope", text_push(&id, "x")).await;
    assert_eq!((status, answer["errNo"].as_i64()), (404, Some(2201)));
    // Nothing was delivered: the next message is the reply to this one.
    assert_eq!(ask(&mut client, "echo:only this").await, "only this");
}

#[tokio::test]
async fn another_services_connection_is_not_found() {
    let gateway = TestGateway::start(&services()).await;
    let mut victim = gateway.connect("other").await;
    let victim_id = connection_id(&mut victim).await;

    // By reverse push on the wrong service's route.
    let (status, answer) = post_push(&gateway, "probe", text_push(&victim_id, "x")).await;
    assert_eq!((status, answer["errNo"].as_i64()), (404, Some(2202)));
    let (status, _) = post_push(&gateway, "probe", close_push(&victim_id)).await;
    assert_eq!(status, 404);
    let (_, listing) = get_json(&gateway.control_url("/push/probe")).await;
    assert!(listing["connections"].as_array().unwrap().is_empty());

    // By host call from a handler of another service.
    let mut attacker = gateway.connect("probe").await;
    assert_eq!(
        ask(&mut attacker, &format!("push-to:{victim_id}:hi")).await,
        "result:2202"
    );
    assert_eq!(
        ask(&mut attacker, &format!("close-other:{victim_id}")).await,
        "result:2202"
    );
    let route = close_push(&victim_id);
    assert_eq!(
        ask(&mut attacker, &format!("route:{route}")).await,
        "result:2202"
    );

    // The victim received nothing and is still open.
    assert_eq!(ask(&mut victim, "echo:fine").await, "fine");
}

#[tokio::test]
async fn host_calls_reach_connections_of_the_same_service() {
    let gateway = TestGateway::start(&services()).await;
    let mut a = gateway.connect("probe").await;
    let mut b = gateway.connect("probe").await;
    let b_id = connection_id(&mut b).await;
    assert_eq!(
        ask(&mut a, &format!("push-to:{b_id}:hello b")).await,
        "result:0"
    );
    assert_eq!(next_text(&mut b).await, "hello b");
    let route = text_push(&b_id, "routed");
    assert_eq!(ask(&mut a, &format!("route:{route}")).await, "result:0");
    assert_eq!(next_text(&mut b).await, "routed");
    assert_eq!(ask(&mut a, "route:{bad json").await, "result:2001");
    assert_eq!(
        ask(&mut a, &format!("close-other:{b_id}")).await,
        "result:0"
    );
    assert_eq!(close_code(&mut b).await, Some(1000));
}

#[tokio::test]
async fn a_service_with_a_token_needs_it() {
    let gateway = TestGateway::start(&services()).await;
    let mut client = gateway.connect("locked").await;
    let id = connection_id(&mut client).await;
    let url = gateway.control_url("/push/locked");
    for auth in [
        None,
        Some("Bearer wrong-token-0123456789".to_owned()),
        Some(format!("Basic {TOKEN}")),
    ] {
        let mut request = http()
            .post(&url)
            .header("content-type", "application/json")
            .body(text_push(&id, "x"));
        if let Some(auth) = auth.clone() {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{auth:?}");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["errNo"], 2101);
        let listing = http().get(&url).send().await.unwrap();
        assert_eq!(listing.status().as_u16(), 401);
    }
    let response = http()
        .post(&url)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(text_push(&id, "authorised"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(next_text(&mut client).await, "authorised");
    let listing = http()
        .get(&url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status().as_u16(), 200);
}

#[tokio::test]
async fn health_and_unknown_routes() {
    let gateway = TestGateway::start(&services()).await;
    let (status, health) = get_json(&gateway.url("/healthz")).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    let (status, answer) = get_json(&gateway.control_url("/push/nope")).await;
    assert_eq!((status, answer["errNo"].as_i64()), (404, Some(2201)));
    let refusal = upgrade_refusal(&gateway.ws_url("/ws/nope")).await;
    assert_eq!(refusal.map(|(status, _)| status), Some(404));
    // A plain GET on the upgrade route is a bad upgrade, with a JSON error.
    let (status, answer) = get_json(&gateway.url("/ws/probe")).await;
    assert!((400..500).contains(&status), "{status}");
    assert_eq!(answer["errNo"], 2305);
}

#[tokio::test]
async fn one_services_token_opens_nothing_of_another() {
    let gateway = TestGateway::start(&[
        ServiceSpec::new("team-a")
            .handler("probe")
            .toml("push_token = \"token-of-team-a-0001\""),
        ServiceSpec::new("team-b")
            .handler("probe")
            .toml("push_token = \"token-of-team-b-0002\""),
    ])
    .await;
    let mut b_client = gateway.connect("team-b").await;
    let b_id = connection_id(&mut b_client).await;
    let a_token = "Bearer token-of-team-a-0001";
    // A's token on B's routes: push, list and inspect are all refused.
    let push = http()
        .post(gateway.control_url("/push/team-b"))
        .header("content-type", "application/json")
        .header("authorization", a_token)
        .body(text_push(&b_id, "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(push.status().as_u16(), 401);
    for path in [
        "/push/team-b".to_owned(),
        format!(
            "/push/team-b/{}",
            b_id.replace('/', "%2F").replace('+', "%2B")
        ),
    ] {
        let response = http()
            .get(gateway.control_url(&path))
            .header("authorization", a_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{path}");
    }
    // A's token on A's route with B's id: not found.
    let response = http()
        .post(gateway.control_url("/push/team-a"))
        .header("content-type", "application/json")
        .header("authorization", a_token)
        .body(close_push(&b_id))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(ask(&mut b_client, "echo:untouched").await, "untouched");
}

#[tokio::test]
async fn the_info_route_finds_ids_of_every_shape() {
    // Ids are Base64: they may start with or contain '/' and '+'. Enough
    // connections that some id almost surely starts with '/'.
    let gateway = TestGateway::start(&[ServiceSpec::new("probe").handler("probe")]).await;
    for _ in 0..300 {
        let mut client = gateway.connect("probe").await;
        let id = connection_id(&mut client).await;
        let encoded = id.replace('/', "%2F").replace('+', "%2B");
        let (status, body) =
            get_json(&gateway.control_url(&format!("/push/probe/{encoded}"))).await;
        assert_eq!(status, 200, "{id}: {body}");
        assert_eq!(body["connection"]["secConnectionID"], id);
    }
}
