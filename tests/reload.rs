use std::time::Duration;

use wasmgate_tests::*;

fn read_wasm(name: &str) -> Vec<u8> {
    std::fs::read(wasm(name)).unwrap()
}

/// Asks "info" until the reply shows the probe (JSON) instead of echo ("info").
async fn until_probe_answers(client: &mut Client) -> usize {
    for attempt in 0..200 {
        let reply = ask(client, "info").await;
        if reply.starts_with('{') {
            return attempt;
        }
        assert_eq!(reply, "info", "unexpected reply");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the new handler never served");
}

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

#[tokio::test]
async fn a_replaced_handler_serves_the_next_events_and_nothing_is_lost() {
    let gateway = TestGateway::start(&[ServiceSpec::new("swap").handler("echo")]).await;
    let dir = gateway.plugins.path().join("swap");
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(gateway.connect("swap").await);
    }
    // Clients keep sending while the file is replaced; every message gets
    // exactly one reply, from the old or the new version, never an error.
    let senders: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(n, mut client)| {
            tokio::spawn(async move {
                let mut switched = false;
                let mut sent = 0;
                while sent < 2000 {
                    let text = format!("{n}-{sent}");
                    send_text(&mut client, &text).await;
                    let reply = next_text(&mut client).await;
                    assert_eq!(reply, text, "a message was lost or reordered");
                    let reply = ask(&mut client, "info").await;
                    if reply.starts_with('{') {
                        switched = true;
                    } else {
                        assert!(
                            !switched,
                            "an event ran on the old version after the new one served"
                        );
                        assert_eq!(reply, "info");
                    }
                    sent += 1;
                    if switched && sent > 50 {
                        break;
                    }
                }
                assert!(switched, "client {n} never saw the new version");
                client
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    install(&dir, "handler.wasm", &read_wasm("probe"));
    for sender in senders {
        let mut client = sender.await.unwrap();
        assert_eq!(ask(&mut client, "echo:still open").await, "still open");
    }
    let swap = admin(&gateway, "swap").await;
    assert_eq!(swap["files"][0]["file"], "handler.wasm");
    let hash = swap["files"][0]["hash"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 64);
    let lines = wait_for_log(&["handler loaded", "service=swap", &hash], 1).await;
    assert_eq!(lines.len(), 1, "one log line per swap: {lines:#?}");
    assert!(lines[0].contains("compile_ms="), "{}", lines[0]);
    assert!(log_lines(&["handler call failed", "swap"]).is_empty());
}

#[tokio::test]
async fn a_half_written_file_is_rejected_and_the_old_version_keeps_serving() {
    let gateway = TestGateway::start(&[ServiceSpec::new("half").handler("echo")]).await;
    let dir = gateway.plugins.path().join("half");
    let probe = read_wasm("probe");
    let mut client = gateway.connect("half").await;
    // A copy that stalls halfway, longer than the debounce window.
    std::fs::write(dir.join("handler.wasm"), &probe[..probe.len() / 2]).unwrap();
    let rejected = wait_for_log(
        &["handler rejected", "service=half", "file=handler.wasm"],
        1,
    )
    .await;
    assert_eq!(rejected.len(), 1, "{rejected:#?}");
    assert_eq!(
        ask(&mut client, "info").await,
        "info",
        "the old version keeps serving"
    );
    let errors = &admin(&gateway, "half").await["errors"]["handler.wasm"];
    assert!(
        errors["error"]
            .as_str()
            .unwrap()
            .contains("half/handler.wasm"),
        "{errors}"
    );
    // The copy completes: the file is tried again and goes live.
    std::fs::write(dir.join("handler.wasm"), &probe).unwrap();
    until_probe_answers(&mut client).await;
    assert!(admin(&gateway, "half").await["errors"]
        .get("handler.wasm")
        .is_none());
}

#[tokio::test]
async fn garbage_and_components_of_another_world_are_rejected() {
    let gateway = TestGateway::start(&[ServiceSpec::new("junk").handler("echo")]).await;
    let dir = gateway.plugins.path().join("junk");
    let mut client = gateway.connect("junk").await;

    install(&dir, "handler.wasm", b"this is not wasm at all");
    let lines = wait_for_log(&["handler rejected", "service=junk", "does not compile"], 1).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(ask(&mut client, "echo").await, "echo");

    let other_world = wat::parse_str(
        r#"(component
             (core module $m (func (export "f")))
             (core instance $i (instantiate $m))
             (func (export "something-else") (canon lift (core func $i "f"))))"#,
    )
    .unwrap();
    install(&dir, "handler.wasm", &other_world);
    let lines = wait_for_log(
        &[
            "handler rejected",
            "service=junk",
            "does not match the wasmgate:gateway/handler world",
        ],
        1,
    )
    .await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(ask(&mut client, "still echo").await, "still echo");
    let echo_hash = admin(&gateway, "junk").await["files"][0]["hash"].clone();

    // A later good file is taken.
    install(&dir, "handler.wasm", &read_wasm("probe"));
    until_probe_answers(&mut client).await;
    assert_ne!(admin(&gateway, "junk").await["files"][0]["hash"], echo_hash);
}

#[tokio::test]
async fn a_deleted_role_file_falls_back_to_the_shared_handler() {
    let gateway = TestGateway::start(&[ServiceSpec::new("roles")
        .handler("echo")
        .file("transfer.wasm", "probe")])
    .await;
    let dir = gateway.plugins.path().join("roles");
    let mut client = gateway.connect("roles").await;
    assert!(ask(&mut client, "info").await.starts_with('{'));
    std::fs::remove_file(dir.join("transfer.wasm")).unwrap();
    for _ in 0..200 {
        if ask(&mut client, "info").await == "info" {
            let roles = &admin(&gateway, "roles").await["roles"];
            assert_eq!(roles["transfer"], "handler.wasm");
            // Without any transfer file, messages are dropped.
            std::fs::remove_file(dir.join("handler.wasm")).unwrap();
            wait_for_log(
                &["handler file removed", "service=roles", "file=handler.wasm"],
                1,
            )
            .await;
            send_text(&mut client, "dropped").await;
            let (status, listing) = get_json(&gateway.control_url("/push/roles")).await;
            assert_eq!(status, 200);
            let id = listing["connections"][0]["secConnectionID"]
                .as_str()
                .unwrap()
                .to_owned();
            post_push(&gateway, "roles", text_push(&id, "pushed")).await;
            assert_eq!(next_text(&mut client).await, "pushed");
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("transfer never fell back to handler.wasm");
}

#[tokio::test]
async fn a_deleted_service_closes_its_connections_after_cleanup() {
    let gateway = TestGateway::start(&[
        ServiceSpec::new("doomed").handler("probe"),
        ServiceSpec::new("bystander").handler("probe"),
    ])
    .await;
    let mut client = gateway.connect("doomed").await;
    let id = connection_id(&mut client).await;
    let mut bystander = gateway.connect("bystander").await;
    std::fs::remove_dir_all(gateway.plugins.path().join("doomed")).unwrap();
    assert_eq!(close_code(&mut client).await, Some(1001));
    let cleanups = wait_for_log(&["cleanup reason=shutdown", &id, "stream=log"], 1).await;
    assert_eq!(
        cleanups.len(),
        1,
        "cleanup ran on the last loaded handler: {cleanups:#?}"
    );
    let refusal = upgrade_refusal(&gateway.ws_url("/ws/doomed")).await;
    assert_eq!(refusal.map(|(status, _)| status), Some(404));
    assert!(admin(&gateway, "doomed").await.is_null());
    assert_eq!(ask(&mut bystander, "echo:unaffected").await, "unaffected");
}

#[tokio::test]
async fn a_new_service_folder_goes_live() {
    let gateway = TestGateway::start(&[]).await;
    let dir = gateway.plugins.path().join("newcomer");
    std::fs::create_dir(&dir).unwrap();
    install(&dir, "handler.wasm", &read_wasm("echo"));
    for _ in 0..200 {
        if let Ok((mut client, _)) =
            tokio_tungstenite::connect_async(gateway.ws_url("/ws/newcomer")).await
        {
            if !admin(&gateway, "newcomer").await["files"]
                .as_array()
                .unwrap()
                .is_empty()
            {
                assert_eq!(ask(&mut client, "hello").await, "hello");
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the new service never went live");
}

#[tokio::test]
async fn services_loading_one_file_share_its_code_and_keep_their_own_versions() {
    let gateway = TestGateway::start(&[ServiceSpec::new("twin-a").handler("echo")]).await;
    // A second service with the same bytes reuses the loaded code.
    let b = gateway.plugins.path().join("twin-b");
    std::fs::create_dir(&b).unwrap();
    install(&b, "handler.wasm", &read_wasm("echo"));
    let lines = wait_for_log(&["handler loaded", "service=twin-b"], 1).await;
    assert!(lines[0].contains("shared_code=true"), "{}", lines[0]);
    let lines = log_lines(&["handler loaded", "service=twin-a"]);
    assert!(lines[0].contains("shared_code=false"), "{}", lines[0]);
    let mut a = gateway.connect("twin-a").await;
    let mut b_client = gateway.connect("twin-b").await;
    assert_eq!(ask(&mut a, "info").await, "info");
    assert_eq!(ask(&mut b_client, "info").await, "info");
    // Each service keeps its own state: twin-b's client is not twin-a's.
    let (_, body) = get_json(&gateway.control_url("/push/twin-a")).await;
    assert_eq!(body["connections"].as_array().unwrap().len(), 1);

    // A new version for twin-a only: twin-b goes on with the shared code.
    install(
        &gateway.plugins.path().join("twin-a"),
        "handler.wasm",
        &read_wasm("probe"),
    );
    until_probe_answers(&mut a).await;
    assert_eq!(ask(&mut b_client, "info").await, "info");
    let mut b_again = gateway.connect("twin-b").await;
    assert_eq!(ask(&mut b_again, "info").await, "info");
    // And when twin-b loads the new bytes too, it reuses twin-a's code.
    install(&b, "handler.wasm", &read_wasm("probe"));
    until_probe_answers(&mut b_again).await;
    let lines = log_lines(&["handler loaded", "service=twin-b"]);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[1].contains("shared_code=true"), "{}", lines[1]);
    gateway.shutdown().await;
}

#[tokio::test]
async fn services_starting_with_one_file_compile_it_once() {
    // Six services of the same bytes load at once at start-up: one
    // compiles, the others wait for it and reuse its code.
    let specs: Vec<ServiceSpec> = (1..=6)
        .map(|n| ServiceSpec::new(&format!("flight-{n}")).handler("echo"))
        .collect();
    let gateway = TestGateway::start(&specs).await;
    let lines = wait_for_log(&["handler loaded", "service=flight-"], 6).await;
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let compiled = lines
        .iter()
        .filter(|line| line.contains("shared_code=false"))
        .count();
    assert_eq!(compiled, 1, "{lines:#?}");
    for n in 1..=6 {
        let mut client = gateway.connect(&format!("flight-{n}")).await;
        assert_eq!(ask(&mut client, "hello").await, "hello");
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_bad_service_toml_keeps_the_old_settings() {
    let gateway = TestGateway::start(&[ServiceSpec::new("tuned")
        .handler("probe")
        .toml("max_message_bytes = 4096")])
    .await;
    let dir = gateway.plugins.path().join("tuned");
    install(&dir, "service.toml", b"max_message_bytes = \"lots\"");
    let lines = wait_for_log(&["bad service.toml", "service=tuned"], 1).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("max_message_bytes"),
        "the key is named: {}",
        lines[0]
    );
    assert!(
        admin(&gateway, "tuned").await["errors"]["service.toml"]["error"]
            .as_str()
            .unwrap()
            .contains("max_message_bytes")
    );
    // Old settings still apply: 3000 bytes pass.
    let mut client = gateway.connect("tuned").await;
    let big = "x".repeat(3000);
    assert_eq!(ask(&mut client, &format!("echo:{big}")).await, big);

    // A good file applies to new events: now 3000 bytes are too many.
    install(&dir, "service.toml", b"max_message_bytes = 1024");
    for _ in 0..200 {
        if admin(&gateway, "tuned").await["errors"]
            .get("service.toml")
            .is_none()
        {
            let mut client = gateway.connect("tuned").await;
            send_text(&mut client, &big).await;
            assert_eq!(close_code(&mut client).await, Some(1009));
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the corrected service.toml was never applied");
}

#[tokio::test]
async fn a_restart_loads_compiled_handlers_from_the_cache() {
    let spec = [ServiceSpec::new("cached").handler("echo")];
    let first = TestGateway::start(&spec).await;
    drop(first);
    let second = TestGateway::start(&spec).await;
    let cached = admin(&second, "cached").await;
    assert_eq!(cached["files"][0]["fromCache"], true, "{cached}");
    let mut client = second.connect("cached").await;
    assert_eq!(ask(&mut client, "from cache").await, "from cache");
}

#[tokio::test]
async fn a_service_whose_handler_has_not_loaded_refuses_clients() {
    // The first handler.wasm of the service does not compile: no register
    // check can run, so no client may get in.
    let gateway = TestGateway::start(&[
        ServiceSpec::new("not-ready-yet").bytes("handler.wasm", b"not wasm yet".to_vec())
    ])
    .await;
    wait_for_log(&["handler rejected", "service=not-ready-yet "], 1).await;
    let (status, body) = upgrade_refusal(&gateway.ws_url("/ws/not-ready-yet?deny=checked"))
        .await
        .expect("a client got in without its register check");
    assert_eq!(
        (status, body["errNo"].as_i64()),
        (503, Some(2306)),
        "{body}"
    );
    assert!(
        body["errMsg"].as_str().unwrap().contains("handler.wasm"),
        "{body}"
    );
    assert_eq!(admin(&gateway, "not-ready-yet").await["ready"], false);

    // Once a good file is in place, register decides again.
    let dir = gateway.plugins.path().join("not-ready-yet");
    install(&dir, "handler.wasm", &read_wasm("probe"));
    wait_for_log(&["handler loaded", "service=not-ready-yet "], 1).await;
    let (status, body) = upgrade_refusal(&gateway.ws_url("/ws/not-ready-yet?deny=checked"))
        .await
        .expect("register refuses this client");
    assert_eq!(
        (status, body["errNo"].as_i64()),
        (403, Some(4001)),
        "{body}"
    );
    assert_eq!(admin(&gateway, "not-ready-yet").await["ready"], true);
}

#[tokio::test]
async fn a_new_folder_never_admits_a_client_its_register_has_not_checked() {
    let gateway = TestGateway::start(&[]).await;
    let dir = gateway.plugins.path().join("gatekept");
    std::fs::create_dir(&dir).unwrap();
    install(&dir, "handler.wasm", &read_wasm("probe"));
    // Until the folder is seen: 404; while it compiles: 503 with 2306; then
    // register runs and refuses. Never an accepted upgrade.
    for _ in 0..400 {
        match upgrade_refusal(&gateway.ws_url("/ws/gatekept?deny=checked")).await {
            None => panic!("a client got in before the register handler had loaded"),
            Some((403, body)) => {
                assert_eq!(body["errNo"], 4001);
                return;
            }
            Some((404, body)) => assert_eq!(body["errNo"], 2201),
            Some((503, body)) => assert_eq!(body["errNo"], 2306),
            Some(other) => panic!("unexpected answer {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the new service never went live");
}

#[tokio::test]
async fn a_lowered_max_concurrency_holds_once_the_calls_running_finish() {
    let gateway = TestGateway::start(&[ServiceSpec::new("narrowed")
        .handler("probe")
        .toml("max_concurrency = 3\ntimeout_ms = 5000")])
    .await;
    let dir = gateway.plugins.path().join("narrowed");
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(gateway.connect("narrowed").await);
    }
    // Three calls hold every slot while the cap goes down to one.
    for client in &mut clients {
        send_text(client, "overlap:1500").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    install(
        &dir,
        "service.toml",
        b"max_concurrency = 1\ntimeout_ms = 5000",
    );
    wait_for_log(&["settings loaded", "service=narrowed"], 1).await;
    for client in &mut clients {
        assert!(next_text(client).await.starts_with("overlap:"));
    }
    // Now two calls at once must run one after the other.
    let (mut first, mut second) = (clients.remove(0), clients.remove(0));
    send_text(&mut first, "overlap:400").await;
    send_text(&mut second, "overlap:400").await;
    assert_eq!(next_text(&mut first).await, "overlap:1");
    assert_eq!(next_text(&mut second).await, "overlap:1");
}

#[tokio::test]
async fn files_whose_stat_did_not_change_are_not_read_again() {
    let gateway = TestGateway::start(&[ServiceSpec::new("quiet-folder").handler("probe")]).await;
    let dir = gateway.plugins.path().join("quiet-folder");
    let reads = || {
        log_lines(&[
            "changed on disk",
            "service=quiet-folder",
            "file=handler.wasm",
        ])
        .len()
    };
    assert_eq!(reads(), 1, "read once at start-up");
    // Other files come and go in the folder: each change reconciles the
    // service, and the unchanged handler is not read again.
    let reconciles = || log_lines(&["reconciling", "service=quiet-folder"]).len();
    let before = reconciles();
    for n in 0..5 {
        std::fs::write(dir.join(format!("notes-{n}.txt")), b"x").unwrap();
        // More than the debounce window, so each write is its own reconcile.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    wait_for_log(&["reconciling", "service=quiet-folder"], before + 5).await;
    assert!(reconciles() >= before + 5, "the folder was reconciled");
    assert_eq!(reads(), 1);
    // A new version is read (and loaded) once.
    install(&dir, "handler.wasm", &read_wasm("echo"));
    wait_for_log(&["handler loaded", "service=quiet-folder"], 2).await;
    assert_eq!(reads(), 2);
}
