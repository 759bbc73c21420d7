use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use wasmgate_tests::*;

fn probe(name: &str) -> ServiceSpec {
    ServiceSpec::new(name).handler("probe")
}

fn chat() -> ServiceSpec {
    ServiceSpec::new("chat").handler("chat")
}

#[tokio::test]
async fn key_value_calls_do_what_they_say() {
    let gateway = TestGateway::start(&[probe("probe")]).await;
    let mut client = gateway.connect("probe").await;
    assert_eq!(ask(&mut client, "kv-get:colour").await, "none");
    assert_eq!(ask(&mut client, "kv-set:colour=blue").await, "result:0");
    assert_eq!(ask(&mut client, "kv-get:colour").await, "value:blue");
    assert_eq!(ask(&mut client, "kv-set:colour=grün").await, "result:0");
    assert_eq!(ask(&mut client, "kv-get:colour").await, "value:grün");
    assert_eq!(ask(&mut client, "kv-set:user/1=a").await, "result:0");
    assert_eq!(ask(&mut client, "kv-set:user/2=b").await, "result:0");
    assert_eq!(ask(&mut client, "kv-set:users=c").await, "result:0");
    assert_eq!(
        ask(&mut client, "kv-keys:user/").await,
        r#"["user/1","user/2"]"#
    );
    assert_eq!(ask(&mut client, "kv-del:user/1").await, "deleted:true");
    assert_eq!(ask(&mut client, "kv-del:user/1").await, "deleted:false");
    assert_eq!(ask(&mut client, "kv-incr:5:hits").await, "counter:5");
    assert_eq!(ask(&mut client, "kv-incr:-7:hits").await, "counter:-2");
    assert_eq!(ask(&mut client, "kv-get:hits").await, "value:-2");
    assert_eq!(ask(&mut client, "kv-incr:1:colour").await, "result:2404");
    assert_eq!(ask(&mut client, "kv-cas:lock==me").await, "swapped:true");
    assert_eq!(ask(&mut client, "kv-cas:lock==you").await, "swapped:false");
    assert_eq!(ask(&mut client, "kv-cas:lock=me=you").await, "swapped:true");
    assert_eq!(ask(&mut client, "kv-get:lock").await, "value:you");
    // Time to live.
    assert_eq!(ask(&mut client, "kv-ttl:150:short=lived").await, "result:0");
    assert_eq!(ask(&mut client, "kv-get:short").await, "value:lived");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(ask(&mut client, "kv-get:short").await, "none");
    assert!(!ask(&mut client, "kv-keys:").await.contains("short"));
    // Limits give their own errNo.
    assert_eq!(ask(&mut client, "kv-set:=empty key").await, "result:2401");
    let long_key = "k".repeat(513);
    assert_eq!(
        ask(&mut client, &format!("kv-set:{long_key}=v")).await,
        "result:2401"
    );
}

#[tokio::test]
async fn a_service_at_its_key_limit_gets_a_clear_error() {
    let gateway = TestGateway::start(&[probe("small").toml("kv_max_keys = 2\n")]).await;
    let mut client = gateway.connect("small").await;
    assert_eq!(ask(&mut client, "kv-set:a=1").await, "result:0");
    assert_eq!(ask(&mut client, "kv-set:b=1").await, "result:0");
    assert_eq!(ask(&mut client, "kv-set:c=1").await, "result:2403");
    // Replacing an existing key is still allowed.
    assert_eq!(ask(&mut client, "kv-set:a=2").await, "result:0");
    assert_eq!(ask(&mut client, "kv-del:b").await, "deleted:true");
    assert_eq!(ask(&mut client, "kv-set:c=1").await, "result:0");
}

#[tokio::test]
async fn a_service_at_its_byte_limit_fails_alone_while_another_keeps_writing() {
    let gateway =
        TestGateway::start(&[probe("greedy").toml("kv_max_bytes = 64\n"), probe("victim")]).await;
    let mut greedy = gateway.connect("greedy").await;
    let mut victim = gateway.connect("victim").await;
    // Key and value count: 1 + 62 bytes fit in 64, one more row does not.
    let fits = format!("kv-set:k={}", "x".repeat(62));
    assert_eq!(ask(&mut greedy, &fits).await, "result:0");
    assert_eq!(ask(&mut greedy, "kv-set:l=xx").await, "result:2408");
    assert_eq!(ask(&mut greedy, "kv-incr:1:n").await, "result:2408");
    // Shrinking is allowed, and makes room.
    assert_eq!(ask(&mut greedy, "kv-set:k=x").await, "result:0");
    assert_eq!(ask(&mut greedy, "kv-set:l=xx").await, "result:0");
    // The other service is not limited by the first one's bytes.
    let large = format!("kv-set:big={}", "y".repeat(4096));
    assert_eq!(ask(&mut victim, &large).await, "result:0");
    assert_eq!(ask(&mut victim, "kv-get:big").await.len(), 6 + 4096);
}

#[tokio::test]
async fn one_service_never_sees_another_services_keys_or_groups() {
    let gateway = TestGateway::start(&[probe("alpha"), probe("beta")]).await;
    let mut a = gateway.connect("alpha").await;
    let mut b = gateway.connect("beta").await;
    assert_eq!(ask(&mut a, "kv-set:secret=alpha's").await, "result:0");
    assert_eq!(ask(&mut b, "kv-get:secret").await, "none");
    assert_eq!(ask(&mut b, "kv-keys:").await, "[]");
    assert_eq!(ask(&mut b, "kv-set:secret=beta's").await, "result:0");
    assert_eq!(ask(&mut a, "kv-get:secret").await, "value:alpha's");
    assert_eq!(ask(&mut b, "kv-del:secret").await, "deleted:true");
    assert_eq!(ask(&mut a, "kv-get:secret").await, "value:alpha's");

    // Same group name, separate groups.
    let b_id = connection_id(&mut b).await;
    assert_eq!(ask(&mut a, "join:room").await, "result:0");
    assert_eq!(ask(&mut b, "join:room").await, "result:0");
    assert_eq!(ask(&mut b, "broadcast:room:hello?").await, "delivered:0");
    assert_eq!(ask(&mut a, "members:room").await.matches(',').count(), 0);
    // Another service's connection can be neither added nor listed.
    assert_eq!(
        ask(&mut a, &format!("join-other:{b_id}:room")).await,
        "result:2202"
    );
    assert!(!ask(&mut a, "members:room").await.contains(&b_id));
    // Nothing reached alpha's client from beta's broadcast.
    assert_eq!(ask(&mut a, "echo:only this").await, "only this");
}

#[tokio::test]
async fn groups_broadcast_and_end_with_their_connections() {
    let gateway = TestGateway::start(&[probe("probe")]).await;
    let mut a = gateway.connect("probe?join=room").await;
    let mut b = gateway.connect("probe?join=room").await;
    let mut c = gateway.connect("probe").await;
    let (a_id, b_id) = (connection_id(&mut a).await, connection_id(&mut b).await);
    assert_eq!(ask(&mut c, "groups").await, "[]");
    assert_eq!(ask(&mut c, "join:room").await, "result:0");
    assert_eq!(ask(&mut c, "join:other").await, "result:0");
    assert_eq!(ask(&mut c, "groups").await, r#"["other","room"]"#);

    // The sender gets no copy; everyone else does.
    assert_eq!(ask(&mut a, "broadcast:room:hi all").await, "delivered:2");
    assert_eq!(next_text(&mut b).await, "hi all");
    assert_eq!(next_text(&mut c).await, "hi all");

    // The reverse push grows a broadcast action; binary stays binary.
    let body = serde_json::json!({"websocket": {"action": "data broadcast", "group": "room", "exceptConnectionID": b_id, "dataType": "binary", "data": "AAEC/w=="}});
    let (status, answer) = post_push(&gateway, "probe", body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["delivered"], 2);
    assert_eq!(
        next_message(&mut a).await,
        Message::binary(vec![0, 1, 2, 255])
    );
    assert_eq!(
        next_message(&mut c).await,
        Message::binary(vec![0, 1, 2, 255])
    );
    let (status, answer) = post_push(
        &gateway,
        "probe",
        r#"{"websocket":{"action":"data broadcast","group":"","data":"x"}}"#,
    )
    .await;
    assert_eq!((status, answer["errNo"].as_i64()), (400, Some(2406)));

    // The info route shows a connection's groups.
    let (_, info) = get_json(&gateway.control_url(&format!("/push/probe/{a_id}"))).await;
    assert_eq!(info["connection"]["groups"], serde_json::json!(["room"]));

    // Leaving, and ending: membership goes with the connection, and cleanup
    // still learns which groups it was in.
    assert_eq!(ask(&mut c, "leave:room").await, "result:0");
    b.close(None).await.unwrap();
    let lines = wait_for_log(
        &["cleanup reason=client", &b_id, "groups=room", "stream=log"],
        1,
    )
    .await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let members = ask(&mut a, "members:room").await;
    assert_eq!(members, serde_json::json!([a_id]).to_string());
    assert_eq!(ask(&mut a, "broadcast:room:anyone?").await, "delivered:0");
    let long_group = "g".repeat(129);
    assert_eq!(
        ask(&mut a, &format!("join:{long_group}")).await,
        "result:2406"
    );
}

#[tokio::test]
async fn the_chat_room_relays_to_everyone_else_in_the_room() {
    let gateway = TestGateway::start(&[chat()]).await;
    let mut alice = gateway.connect("chat?room=tea").await;
    let welcome = next_text(&mut alice).await;
    assert!(welcome.starts_with("you are anon-"), "{welcome}");
    assert!(welcome.ends_with("in #tea (0 others here)"), "{welcome}");
    let mut bob = gateway.connect("chat?room=tea").await;
    assert!(next_text(&mut bob).await.ends_with("(1 others here)"));
    let joined = next_text(&mut alice).await;
    assert!(joined.ends_with(" joined #tea"), "{joined}");
    let mut carol = gateway.connect("chat?room=coffee").await;
    assert!(next_text(&mut carol).await.ends_with("(0 others here)"));

    send_text(&mut alice, "hello, bob ☕").await;
    assert_eq!(next_text(&mut bob).await, "hello, bob ☕");
    send_text(&mut bob, "hi alice").await;
    assert_eq!(next_text(&mut alice).await, "hi alice");
    bob.send(Message::binary(vec![7u8; 3000])).await.unwrap();
    assert_eq!(
        next_message(&mut alice).await,
        Message::binary(vec![7u8; 3000])
    );

    bob.close(None).await.unwrap();
    let left = next_text(&mut alice).await;
    assert!(left.ends_with(" left"), "{left}");
    assert_eq!(
        joined.replace(" joined #tea", ""),
        left.replace(" left", "")
    );

    // The sender got no copy of anything, and the other room heard nothing.
    send_text(&mut carol, "anyone?").await;
    send_text(&mut alice, "still here").await;
    for client in [&mut alice, &mut carol] {
        let quiet = tokio::time::timeout(Duration::from_millis(300), next_message(client)).await;
        assert!(quiet.is_err(), "unexpected message: {quiet:?}");
    }
    // A bad room name is refused by the handler.
    let refused =
        tokio_tungstenite::connect_async(gateway.ws_url("/ws/chat?room=no%20spaces")).await;
    assert!(refused.is_err());
}

/// After a storm of connections that join a group and store their id (half
/// close cleanly, half just vanish), no id of a closed connection is left.
#[tokio::test]
async fn no_stale_ids_after_ten_thousand_connections() {
    const CLIENTS: usize = 10_000;
    const AT_ONCE: usize = 64;
    let gateway = TestGateway::start(&[probe("storm")]).await;
    let url = gateway.ws_url("/ws/storm?join=crowd&track=1");
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let permit = semaphore.clone().acquire_owned().await.unwrap();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let (mut client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            if i % 2 == 0 {
                client.close(None).await.unwrap();
                let _ = close_code(&mut client).await;
            }
            drop(client);
            drop(permit);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    let mut checker = gateway.connect("storm").await;
    let mut state = (String::new(), String::new());
    for _ in 0..300 {
        state = (
            ask(&mut checker, "members:crowd").await,
            ask(&mut checker, "kv-keys:conn/").await,
        );
        if state == ("[]".to_owned(), "[]".to_owned()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state.0, "[]", "group members left behind");
    assert_eq!(state.1, "[]", "stored ids left behind");
    let (_, list) = get_json(&gateway.control_url("/push/storm")).await;
    assert_eq!(list["connections"].as_array().unwrap().len(), 1);
    // A cleanup's log line is written after its call returns, so the last
    // ones may trail the emptied store by a moment.
    let needles = [
        "cleanup reason=",
        "service=storm",
        "groups=crowd",
        "stream=log",
    ];
    let mut cleanups = 0;
    for _ in 0..100 {
        cleanups = log_lines(&needles).len();
        if cleanups >= CLIENTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cleanups, CLIENTS, "one cleanup per connection");
}

// ---------------------------------------------------------------------------
// Durability across `kill -9`: the gateway runs in a child process (this test
// binary again, running `durable_gateway_child`) on a state file of the test.

const CHILD_STATE: &str = "WASMGATE_TEST_CHILD_STATE";
const CHILD_PLUGINS: &str = "WASMGATE_TEST_CHILD_PLUGINS";

/// Not a test of its own: the gateway process of
/// `acknowledged_writes_survive_kill_9`, started by it with the variables set.
#[tokio::test]
#[ignore = "started by acknowledged_writes_survive_kill_9"]
async fn durable_gateway_child() {
    let (Some(state), Some(plugins)) = (
        std::env::var_os(CHILD_STATE),
        std::env::var_os(CHILD_PLUGINS),
    ) else {
        return;
    };
    let config = wasmgate::GatewayConfig {
        max_concurrency: 8,
        max_memory_mb: 128,
        cache_dir: Some(compile_cache_dir()),
        kv: wasmgate::KvConfig::Redb {
            file: Some(state.into()),
        },
        ..wasmgate::GatewayConfig::new(plugins)
    };
    let any = "127.0.0.1:0".parse().unwrap();
    let listeners = wasmgate::Listeners::bind(any, any).await.unwrap();
    println!("LISTENING {}", listeners.public.local_addr().unwrap());
    wasmgate::run(listeners, config, std::future::pending::<()>())
        .await
        .unwrap();
}

/// Starts the child gateway and returns it with its address.
fn start_child(state: &std::path::Path, plugins: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "state::durable_gateway_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_STATE, state)
        .env(CHILD_PLUGINS, plugins)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix("LISTENING ") {
            return (child, addr.to_owned());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the child gateway did not start");
}

async fn child_client(addr: &str) -> Client {
    // The child loads its services before it answers.
    for _ in 0..100 {
        if let Ok((client, _)) =
            tokio_tungstenite::connect_async(format!("ws://{addr}/ws/probe")).await
        {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the child gateway does not accept connections");
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(plugins.join("probe")).unwrap();
    std::fs::copy(wasm("probe"), plugins.join("probe/handler.wasm")).unwrap();
    let state = dir.path().join("state.redb");

    let (mut child, addr) = start_child(&state, &plugins);
    let mut client = child_client(&addr).await;
    for i in 0..50 {
        assert_eq!(
            ask(&mut client, &format!("kv-set:item/{i:02}=value {i}")).await,
            "result:0"
        );
    }
    assert_eq!(ask(&mut client, "kv-incr:41:answer").await, "counter:41");
    assert_eq!(ask(&mut client, "kv-incr:1:answer").await, "counter:42");
    // No graceful anything: SIGKILL right after the last acknowledgement.
    child.kill().unwrap();
    child.wait().unwrap();
    drop(client);

    let (mut child, addr) = start_child(&state, &plugins);
    let mut client = child_client(&addr).await;
    assert_eq!(ask(&mut client, "kv-get:answer").await, "value:42");
    assert_eq!(ask(&mut client, "kv-get:item/49").await, "value:value 49");
    let keys: Vec<String> = serde_json::from_str(&ask(&mut client, "kv-keys:item/").await).unwrap();
    assert_eq!(keys.len(), 50);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_lists_a_groups_members_a_page_at_a_time() {
    let gateway = TestGateway::start(&[
        ServiceSpec::new("pages").handler("hostile"),
        ServiceSpec::new("pages-other").handler("hostile"),
    ])
    .await;
    let mut clients = Vec::new();
    for n in 0..5 {
        let mut client = gateway.connect("pages").await;
        let group = if n < 4 { "join:room" } else { "join:hall" };
        assert_eq!(ask(&mut client, group).await, "joined");
        clients.push(client);
    }
    // Another service's member of a group of the same name is not listed.
    let mut other = gateway.connect("pages-other").await;
    assert_eq!(ask(&mut other, "join:room").await, "joined");
    // The room's members, from the plain list's groups.
    let (_, list) = get_json(&gateway.control_url("/push/pages")).await;
    let mut in_room: Vec<String> = list["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["groups"].as_array().unwrap().iter().any(|g| g == "room"))
        .map(|c| c["secConnectionID"].as_str().unwrap().to_owned())
        .collect();
    in_room.sort();
    assert_eq!(in_room.len(), 4);

    let mut seen = Vec::new();
    let mut url = gateway.control_url("/push/pages?group=room&limit=3");
    let mut pages = 0;
    loop {
        let (status, page) = get_json(&url).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["group"], "room");
        pages += 1;
        seen.extend(
            page["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_str().unwrap().to_owned()),
        );
        match page["cursor"].as_str() {
            Some(cursor) => {
                url = gateway.control_url(&format!(
                    "/push/pages?group=room&limit=3&cursor={}",
                    cursor.replace('/', "%2F").replace('+', "%2B")
                ))
            }
            None => break,
        }
    }
    assert_eq!((pages, seen), (2, in_room));

    // Malformed paging gets a clear error, not a guess.
    for (query, needle) in [
        ("limit=0&group=room", "limit"),
        ("limit=many&group=room", "limit"),
        ("cursor=x", "add group"),
        ("group=", "group"),
    ] {
        let (status, body) = get_json(&gateway.control_url(&format!("/push/pages?{query}"))).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["errMsg"].as_str().unwrap().contains(needle),
            "{query}: {body}"
        );
    }
    // An empty group is an empty page; the plain list is unchanged.
    let (_, empty) = get_json(&gateway.control_url("/push/pages?group=nobody")).await;
    assert_eq!(
        (empty["members"].as_array().unwrap().len(), &empty["cursor"]),
        (0, &serde_json::Value::Null)
    );
    let (_, list) = get_json(&gateway.control_url("/push/pages")).await;
    assert_eq!(list["connections"].as_array().unwrap().len(), 5);
    drop(clients);
    gateway.shutdown().await;
}

/// What register learns travels with the connection: the answer's
/// `attributes` arrive in every transfer and in cleanup, a handler replaces
/// them, the info route shows them, and bad ones are refused, never kept.
#[tokio::test]
async fn attributes_travel_from_register_to_transfer_and_cleanup() {
    let gateway = TestGateway::start(&[probe("attrs")]).await;
    let query = r#"{"room":"lobby","user":"u1"}"#;
    let mut client = gateway
        .connect(&format!(
            "attrs?attrs={}",
            form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
        ))
        .await;
    let id = connection_id(&mut client).await;
    let attrs: serde_json::Value = serde_json::from_str(&ask(&mut client, "attrs").await).unwrap();
    assert_eq!(attrs, serde_json::json!({"room": "lobby", "user": "u1"}));

    // A handler replaces them; every later event carries the new ones.
    assert_eq!(
        ask(&mut client, r#"set-attrs:{"room":"kitchen","n":[1,2]}"#).await,
        "result:0"
    );
    assert_eq!(
        ask(&mut client, "attrs").await,
        r#"{"n":[1,2],"room":"kitchen"}"#
    );
    let (_, info) = get_json(&gateway.control_url(&format!(
        "/push/attrs/{}",
        form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
    )))
    .await;
    assert_eq!(info["connection"]["attributes"]["room"], "kitchen");

    // Bad attributes fail the call and change nothing.
    assert_eq!(ask(&mut client, "set-attrs:[1,2]").await, "result:2007");
    assert_eq!(ask(&mut client, "set-attrs:not json").await, "result:2007");
    let huge = format!(r#"set-attrs:{{"a":"{}"}}"#, "x".repeat(5000));
    assert_eq!(ask(&mut client, &huge).await, "result:2007");
    assert_eq!(
        ask(&mut client, "attrs").await,
        r#"{"n":[1,2],"room":"kitchen"}"#
    );

    // Cleanup gets the last ones.
    client.close(None).await.unwrap();
    let lines = wait_for_log(
        &[
            "cleanup reason=client",
            &id,
            "attrs={",
            "room",
            "kitchen",
            "stream=log",
        ],
        1,
    )
    .await;
    assert_eq!(lines.len(), 1, "{lines:#?}");

    // `{}` empties them; none are sent then.
    let mut plain = gateway.connect("attrs").await;
    assert_eq!(ask(&mut plain, "attrs").await, "none");
    assert_eq!(ask(&mut plain, r#"set-attrs:{"a":1}"#).await, "result:0");
    assert_eq!(ask(&mut plain, "set-attrs:{}").await, "result:0");
    assert_eq!(ask(&mut plain, "attrs").await, "none");

    // Set during register, they stand when the answer gives none.
    let mut early = gateway
        .connect(&format!(
            "attrs?set-attrs={}",
            form_urlencoded::byte_serialize(br#"{"from":"register"}"#).collect::<String>()
        ))
        .await;
    assert_eq!(ask(&mut early, "attrs").await, r#"{"from":"register"}"#);
}

/// A register answer whose attributes are not an object, or too large,
/// refuses the client (503, 2302) with a log line saying why.
#[tokio::test]
async fn bad_attributes_in_a_register_answer_refuse_the_client() {
    let gateway = TestGateway::start(&[probe("attrs-bad")]).await;
    for (attrs, why) in [
        ("[1,2]".to_owned(), "attributes must be a JSON object"),
        (
            format!(r#"{{"a":"{}"}}"#, "x".repeat(5000)),
            "larger than 4096",
        ),
    ] {
        let query = form_urlencoded::byte_serialize(attrs.as_bytes()).collect::<String>();
        let refusal = upgrade_refusal(&gateway.ws_url(&format!("/ws/attrs-bad?attrs={query}")))
            .await
            .expect("refused");
        assert_eq!((refusal.0, refusal.1["errNo"].as_i64()), (503, Some(2302)));
        wait_for_log(&["service=attrs-bad", "malformed register answer", why], 1).await;
    }
    // The service goes on serving.
    let mut client = gateway.connect("attrs-bad").await;
    assert_eq!(ask(&mut client, "echo:still").await, "still");
}

/// A tally in one call: `list-entries` answers keys with their values and
/// `get-many` several keys at once, through a real gateway.
#[tokio::test]
async fn a_handler_reads_entries_and_many_keys_in_one_call() {
    let gateway = TestGateway::start(&[probe("kv-many")]).await;
    let mut client = gateway.connect("kv-many").await;
    for command in ["kv-set:vote/a=yes", "kv-set:vote/b=no", "kv-set:other=x"] {
        assert_eq!(ask(&mut client, command).await, "result:0");
    }
    assert_eq!(
        ask(&mut client, "kv-entries:vote/").await,
        r#"{"vote/a":"yes","vote/b":"no"}"#
    );
    assert_eq!(
        ask(&mut client, "kv-many:vote/b,missing,other").await,
        r#"["no",null,"x"]"#
    );
    let too_many = (0..1001)
        .map(|i| format!("k{i}"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        ask(&mut client, &format!("kv-many:{too_many}")).await,
        "result:2409"
    );
    assert_eq!(ask(&mut client, "kv-many:vote/a,").await, "result:2401");
}
