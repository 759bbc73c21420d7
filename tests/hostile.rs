use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use wasmgate_tests::*;

fn hostile(toml: &str) -> ServiceSpec {
    ServiceSpec::new("hostile").handler("hostile").toml(toml)
}

fn calm() -> ServiceSpec {
    ServiceSpec::new("calm").handler("echo")
}

/// Sends `command` on a fresh connection and expects the call to fail with
/// 1011 and a log line naming service, role and `cause`.
async fn fails_alone(gateway: &TestGateway, command: &str, cause: &str) {
    let mut client = gateway.connect("hostile").await;
    send_text(&mut client, command).await;
    assert_eq!(close_code(&mut client).await, Some(1011), "{command}");
    let lines = wait_for_log(
        &[
            "handler call failed",
            "service=hostile",
            "role=transfer",
            cause,
        ],
        1,
    )
    .await;
    assert!(
        !lines.is_empty(),
        "{command}: no log line naming the cause {cause:?}"
    );
    // Another service is untouched.
    let mut bystander = gateway.connect("calm").await;
    assert_eq!(ask(&mut bystander, "still fine").await, "still fine");
}

#[tokio::test]
async fn a_memory_bomb_fails_only_its_call_and_the_pool_slot_is_reused() {
    let gateway = TestGateway::start(&[hostile("memory_limit_mb = 16"), calm()]).await;
    fails_alone(&gateway, "bomb", "exceeded its memory limit").await;
    // More bombs than the pool has slots (32): every slot is given back.
    for _ in 0..40 {
        let mut client = gateway.connect("hostile").await;
        send_text(&mut client, "bomb").await;
        assert_eq!(close_code(&mut client).await, Some(1011));
    }
    let mut client = gateway.connect("hostile").await;
    assert_eq!(ask(&mut client, "normal again").await, "normal again");
}

#[tokio::test]
async fn a_stack_overflow_fails_only_its_call() {
    let gateway = TestGateway::start(&[hostile(""), calm()]).await;
    // Rust keeps its stack in linear memory: overflowing it is an
    // out-of-bounds access below the stack's base, a trap like any other.
    fails_alone(&gateway, "recurse", "trapped: ").await;
}

#[tokio::test]
async fn an_answer_over_the_limit_fails_only_its_call() {
    let gateway = TestGateway::start(&[hostile(""), calm()]).await;
    fails_alone(&gateway, "huge-answer", "exceeds the limit").await;
}

#[tokio::test]
async fn an_answer_that_is_not_utf8_fails_only_its_call() {
    let gateway = TestGateway::start(&[hostile(""), calm()]).await;
    fails_alone(&gateway, "bad-utf8", "trapped: ").await;
}

#[tokio::test]
async fn a_million_pushes_in_one_call_are_bounded_by_the_queue() {
    let _measuring = measuring_memory().await;
    let gateway =
        TestGateway::start(&[hostile("outbound_queue = 64\ntimeout_ms = 20000"), calm()]).await;
    let before = rss_bytes();
    let mut client = gateway.connect("hostile").await;
    send_text(&mut client, "flood:1000000").await;
    // The client reads at most the queue's worth, then the close.
    let mut received = 0;
    let code = loop {
        match next_or_close(&mut client).await {
            Ok(_) => received += 1,
            Err(code) => break code,
        }
    };
    // The queue overflowed (the writer cannot keep up with a tight loop of
    // pushes), so the client was closed and most pushes were refused.
    assert_eq!(code, Some(1008));
    assert!(
        received < 500_000,
        "{received} of a million pushes were delivered"
    );
    let lines = wait_for_log(
        &[
            "connection closed",
            "service=hostile",
            "sent_code=Some(1008)",
        ],
        1,
    )
    .await;
    assert!(!lines.is_empty());
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        grown < 256 << 20,
        "a push flood grew memory by {} MiB",
        grown >> 20
    );
    let mut bystander = gateway.connect("calm").await;
    assert_eq!(ask(&mut bystander, "unaffected").await, "unaffected");
}

/// The next data message, or the close code once the connection closes.
async fn next_or_close(client: &mut Client) -> Result<Message, Option<u16>> {
    use futures_util::StreamExt;
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(30), client.next())
            .await
            .expect("no stall")
        {
            Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| u16::from(f.code))),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(message)) => return Ok(message),
            Some(Err(_)) | None => return Err(None),
        }
    }
}

#[tokio::test]
async fn a_push_to_itself_reaches_the_client_and_never_re_enters_the_handler() {
    let gateway = TestGateway::start(&[hostile(""), calm()]).await;
    let mut client = gateway.connect("hostile").await;
    let before = log_lines(&["transfer self-push"]).len();
    assert_eq!(ask(&mut client, "self-push").await, "self-push");
    assert_eq!(ask(&mut client, "after").await, "after");
    assert_eq!(log_lines(&["transfer self-push"]).len(), before + 1);
}

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_with_1008_and_others_keep_going() {
    let gateway = TestGateway::start(&[ServiceSpec::new("probe")
        .handler("probe")
        .toml("outbound_queue = 8")])
    .await;
    let mut slow = gateway.connect("probe").await;
    let slow_id = connection_id(&mut slow).await;
    let mut other = gateway.connect("probe").await;
    // The slow client stops reading; pushes pile up in its queue (and the
    // socket buffers), until the queue overflows.
    let body = text_push(&slow_id, &"p".repeat(64 * 1024));
    let mut overflowed = false;
    for _ in 0..2000 {
        let (status, answer) = post_push(&gateway, "probe", body.clone()).await;
        if status == 503 {
            assert_eq!(answer["errNo"], 2203);
            overflowed = true;
            break;
        }
        assert_eq!(status, 200, "{answer}");
    }
    assert!(overflowed, "the queue never overflowed");
    assert_eq!(ask(&mut other, "echo:unaffected").await, "unaffected");
    let lines = wait_for_log(&["connection closed", &slow_id, "sent_code=Some(1008)"], 1).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let (status, _) = post_push(&gateway, "probe", text_push(&slow_id, "late")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn upgrades_past_max_connections_get_503() {
    let gateway = TestGateway::start(&[ServiceSpec::new("small")
        .handler("echo")
        .toml("max_connections = 2")])
    .await;
    let _a = gateway.connect("small").await;
    let _b = gateway.connect("small").await;
    let (status, body) = upgrade_refusal(&gateway.ws_url("/ws/small"))
        .await
        .expect("expected 503");
    assert_eq!(status, 503);
    assert_eq!(body["errNo"], 2303);
    drop(_a);
    // A slot frees once a connection is gone.
    for _ in 0..100 {
        if tokio_tungstenite::connect_async(gateway.ws_url("/ws/small"))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the freed slot was never reused");
}

#[tokio::test]
async fn a_malformed_upgrade_gets_400() {
    let gateway = TestGateway::start(&[calm()]).await;
    let response = http()
        .get(gateway.url("/ws/calm"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["errNo"], 2305);
    assert!(body["errMsg"]
        .as_str()
        .unwrap()
        .contains("bad WebSocket upgrade"));
}

#[tokio::test]
async fn a_service_at_its_concurrency_cap_delays_only_itself() {
    let gateway = TestGateway::start(&[
        ServiceSpec::new("busy")
            .handler("probe")
            .toml("max_concurrency = 1\ntimeout_ms = 1500"),
        calm(),
    ])
    .await;
    let mut spinner = gateway.connect("busy").await;
    send_text(&mut spinner, "loop").await;
    // While busy's only slot spins, calm serves every message.
    let mut bystander = gateway.connect("calm").await;
    for i in 0..20 {
        let text = format!("calm {i}");
        assert_eq!(ask(&mut bystander, &text).await, text);
    }
    assert_eq!(close_code(&mut spinner).await, Some(1011));
    // And busy itself recovers once the slot is free.
    let mut client = gateway.connect("busy").await;
    assert_eq!(ask(&mut client, "echo:free").await, "free");
}

/// Resident set size of this process (the gateway runs in it), in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test]
async fn connect_close_storms_and_ping_floods_leave_memory_bounded() {
    let _measuring = measuring_memory().await;
    let gateway = TestGateway::start(&[calm()]).await;
    // Warm up allocator pools before measuring.
    for _ in 0..200 {
        let mut client = gateway.connect("calm").await;
        client.close(None).await.unwrap();
    }
    let before = rss_bytes();
    for _ in 0..2000 {
        let mut client = gateway.connect("calm").await;
        client.close(None).await.unwrap();
    }
    let mut client = gateway.connect("calm").await;
    for _ in 0..20_000 {
        client
            .send(Message::Ping(vec![1, 2, 3].into()))
            .await
            .unwrap();
    }
    assert_eq!(ask(&mut client, "alive").await, "alive");
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "memory grew by {} MiB", grown >> 20);
    // Closed connections left nothing behind in the router.
    let (_, listing) = get_json(&gateway.control_url("/push/calm")).await;
    assert_eq!(listing["connections"].as_array().unwrap().len(), 1);
}

/// A handler asking for the members of a large group over and over works
/// under its own service's lock only: meanwhile another service connects,
/// joins, is pushed to and broadcasts as usual. `members` answers the first
/// 1000 ids; `members-page` reads the whole group, each id once.
#[tokio::test]
async fn looping_members_of_a_large_group_holds_up_no_other_service() {
    const CROWD: usize = 1500;
    // 1500 connections take tens of MiB: no memory measurement runs meanwhile.
    let _large = using_large_handlers().await;
    let gateway = TestGateway::start(&[
        hostile("timeout_ms = 60000"),
        ServiceSpec::new("victim").handler("probe"),
    ])
    .await;
    let mut crowd = Vec::new();
    for _ in 0..CROWD / 50 {
        let joins = (0..50).map(|_| async {
            let mut client = gateway.connect("hostile").await;
            assert_eq!(ask(&mut client, "join:crowd").await, "joined");
            client
        });
        crowd.extend(futures_util::future::join_all(joins).await);
    }

    let loopers: Vec<_> = (0..4)
        .map(|_| {
            let url = gateway.ws_url("/ws/hostile");
            tokio::spawn(async move {
                let (mut client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
                // 300 pages of a 5,000-member group: seconds of work on a
                // busy machine; the point is that others do not wait for it.
                ask_within(
                    &mut client,
                    "members:300:crowd",
                    std::time::Duration::from_secs(60),
                )
                .await
            })
        })
        .collect();
    // The other service, meanwhile: connects, groups, pushes, broadcasts.
    let mut victims = Vec::new();
    for n in 0..20 {
        let mut client = gateway.connect("victim?join=room").await;
        let id = connection_id(&mut client).await;
        let (status, answer) =
            post_push(&gateway, "victim", text_push(&id, &format!("push {n}"))).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(next_text(&mut client).await, format!("push {n}"));
        victims.push(client);
    }
    assert_eq!(
        ask(&mut victims[0], "broadcast:room:hello").await,
        "delivered:19"
    );
    for victim in &mut victims[1..] {
        assert_eq!(next_text(victim).await, "hello");
    }
    assert_eq!(
        ask(&mut victims[0], "members:room")
            .await
            .matches(',')
            .count(),
        19
    );

    for looper in loopers {
        assert_eq!(looper.await.unwrap(), "members 1000");
    }
    let mut reader = gateway.connect("hostile").await;
    assert_eq!(
        ask(&mut reader, "members-pages:300:crowd").await,
        format!("pages 5 members {CROWD} distinct {CROWD}")
    );
    drop(crowd);
}
