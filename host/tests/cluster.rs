//! Cluster mode: several `wasmgate serve --cluster` processes on one real
//! `redis-server` (started by each test on a free port in a temporary
//! folder, killed at its end) act as one. Every test drives them from
//! outside, as a user would: WebSocket clients on one node, reverse pushes
//! and closes through another node's control listener, `kill -9` of a
//! node, Redis stopped and started again.
//!
//! Cleanups are observed in the nodes' logs: the test handlers log every
//! closing event they get (with its `closeReason` and connection id), and
//! the gateway tags the line with the service and role. The groups tests
//! run a handler whose clients join one group when they connect and
//! broadcast to it when they speak.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{scratch, GatewayProcess};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Echo (through the `route` host call) plus a cleanup that logs its event.
const HANDLER: &str = r#"
(module
  (import "wasmgate:gateway/host@0.1.0" "route" (func $route (param i32 i32 i32)))
  (import "wasmgate:gateway/host@0.1.0" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 16) "{\"errNo\":0,\"errMsg\":\"ok\"}")
  (data (i32.const 48) "{}")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $ptr i32)
    (local.set $ptr
      (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
               (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $ptr) (local.get 3)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.shr_u (local.get 3) (i32.const 16)) (i32.const 1))))))
    (local.get $ptr))
  (func (export "handle")
        (param i32 i32 i32 i32 i32 i32 i32 i64 i32 i32) (result i32)
    (i32.store8 (i32.const 64) (i32.const 0))
    (if (i32.eqz (local.get 2))
      (then
        (i32.store offset=4 (i32.const 64) (i32.const 16))
        (i32.store offset=8 (i32.const 64) (i32.const 25))
        (return (i32.const 64))))
    (if (i32.eq (local.get 2) (i32.const 1))
      (then (call $route (local.get 8) (local.get 9) (i32.const 128))))
    ;; cleanup (2) and timer (4) log their event
    (if (i32.or (i32.eq (local.get 2) (i32.const 2)) (i32.eq (local.get 2) (i32.const 4)))
      (then (call $log (i32.const 2) (local.get 8) (local.get 9))))
    (i32.store offset=4 (i32.const 64) (i32.const 48))
    (i32.store offset=8 (i32.const 64) (i32.const 2))
    (i32.const 64))
  (func (export "cabi_post_handle") (param i32)))
"#;

/// Groups: register joins the connection to `room` and answers with the
/// attributes `{"user":"u1"}`; transfer broadcasts the event (text) to
/// `room` but the sender, then reads `members("room")` and logs each member
/// whose `groups-of` answers `["room"]`; cleanup logs its event, then
/// `groups: room` when `groups-of` of the ending connection answers that.
const GROUPS_HANDLER: &str = r#"
(module
  (import "wasmgate:gateway/host@0.1.0" "log" (func $log (param i32 i32 i32)))
  (import "wasmgate:gateway/groups@0.1.0" "join" (func $join (param i32 i32 i32 i32 i32)))
  (import "wasmgate:gateway/groups@0.1.0" "members" (func $members (param i32 i32 i32)))
  (import "wasmgate:gateway/groups@0.1.0" "groups-of" (func $groups_of (param i32 i32 i32)))
  (import "wasmgate:gateway/groups@0.1.0" "broadcast"
    (func $broadcast (param i32 i32 i32 i32 i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 48) "{}")
  (data (i32.const 96) "room")
  (data (i32.const 104) "groups: room")
  (data (i32.const 256) "{\"errNo\":0,\"errMsg\":\"ok\",\"attributes\":{\"user\":\"u1\"}}")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $ptr i32)
    (local.set $ptr
      (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
               (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $ptr) (local.get 3)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.shr_u (local.get 3) (i32.const 16)) (i32.const 1))))))
    (local.get $ptr))
  ;; Whether the list result at 224 is ok and exactly ["room"].
  (func $just_room (result i32)
    (local $list i32)
    (if (i32.load8_u (i32.const 224)) (then (return (i32.const 0))))
    (if (i32.ne (i32.load offset=8 (i32.const 224)) (i32.const 1)) (then (return (i32.const 0))))
    (local.set $list (i32.load offset=4 (i32.const 224)))
    (if (i32.ne (i32.load offset=4 (local.get $list)) (i32.const 4)) (then (return (i32.const 0))))
    (i32.eq (i32.load (i32.load (local.get $list))) (i32.const 0x6d6f6f72)))
  (func (export "handle")
        (param i32 i32 i32 i32 i32 i32 i32 i64 i32 i32) (result i32)
    (local $i i32) (local $list i32) (local $count i32) (local $id i32)
    (i32.store8 (i32.const 64) (i32.const 0))
    (i32.store offset=4 (i32.const 64) (i32.const 48))
    (i32.store offset=8 (i32.const 64) (i32.const 2))
    (if (i32.eqz (local.get 2))
      (then
        (call $join (i32.const 96) (i32.const 4) (local.get 5) (local.get 6) (i32.const 128))
        (i32.store offset=4 (i32.const 64) (i32.const 256))
        (i32.store offset=8 (i32.const 64) (i32.const 52))))
    (if (i32.eq (local.get 2) (i32.const 1))
      (then
        (call $broadcast (i32.const 96) (i32.const 4)
          (i32.const 0) (local.get 8) (local.get 9)
          (i32.const 1) (local.get 5) (local.get 6) (i32.const 160))
        (call $members (i32.const 96) (i32.const 4) (i32.const 192))
        (if (i32.eqz (i32.load8_u (i32.const 192)))
          (then
            (local.set $list (i32.load offset=4 (i32.const 192)))
            (local.set $count (i32.load offset=8 (i32.const 192)))
            (block $done
              (loop $next
                (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
                (local.set $id (i32.add (local.get $list) (i32.shl (local.get $i) (i32.const 3))))
                (call $groups_of (i32.load (local.get $id)) (i32.load offset=4 (local.get $id))
                  (i32.const 224))
                (if (call $just_room)
                  (then (call $log (i32.const 2)
                    (i32.load (local.get $id)) (i32.load offset=4 (local.get $id)))))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br $next)))))))
    (if (i32.eq (local.get 2) (i32.const 2))
      (then
        (call $log (i32.const 2) (local.get 8) (local.get 9))
        (call $groups_of (local.get 5) (local.get 6) (i32.const 224))
        (if (call $just_room)
          (then (call $log (i32.const 2) (i32.const 104) (i32.const 12))))))
    (i32.const 64))
  (func (export "cabi_post_handle") (param i32)))
"#;

/// Key-value commands, one letter each, answered by a push of the result
/// to the sender: `s` sets `k` to the sender's connection id (`ok`), `g`
/// gets `k`, `i` increments `n` by 1 (`ok`), `n` gets `n`, `c` claims
/// `winner` for the sender by a compare-and-swap from absent (`won` or
/// `lost`), `w` gets `winner`. A get answers the value or `none`; a
/// failed call answers its `errMsg`. The letter is the first byte of
/// `data` in the data send event, which always sits at offset 43:
/// `{"websocket":{"action":"data send","data":"`.
const KV_HANDLER: &str = r#"
(module
  (import "wasmgate:gateway/host@0.1.0" "push" (func $push (param i32 i32 i32 i32 i32 i32)))
  (import "wasmgate:gateway/kv@0.1.0" "set" (func $set (param i32 i32 i32 i32 i32 i64 i32)))
  (import "wasmgate:gateway/kv@0.1.0" "get" (func $get (param i32 i32 i32)))
  (import "wasmgate:gateway/kv@0.1.0" "increment" (func $increment (param i32 i32 i64 i32)))
  (import "wasmgate:gateway/kv@0.1.0" "compare-and-swap"
    (func $cas (param i32 i32 i32 i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 16) "{\"errNo\":0,\"errMsg\":\"ok\"}")
  (data (i32.const 48) "{}")
  (data (i32.const 96) "k")
  (data (i32.const 100) "n")
  (data (i32.const 104) "winner")
  (data (i32.const 112) "ok")
  (data (i32.const 116) "none")
  (data (i32.const 120) "won")
  (data (i32.const 124) "lost")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $ptr i32)
    (local.set $ptr
      (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
               (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $ptr) (local.get 3)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.shr_u (local.get 3) (i32.const 16)) (i32.const 1))))))
    (local.get $ptr))
  ;; Pushes memory[ptr, ptr + len) as text to the connection.
  (func $reply (param $conn i32) (param $conn_len i32) (param $ptr i32) (param $len i32)
    (call $push (local.get $conn) (local.get $conn_len) (i32.const 0)
                (local.get $ptr) (local.get $len) (i32.const 320)))
  ;; Replies with a get's result at 256: the value, "none" or the errMsg
  ;; (both a string at 264 and its length at 268).
  (func $reply_value (param $conn i32) (param $conn_len i32)
    (if (i32.and (i32.eqz (i32.load8_u (i32.const 256)))
                 (i32.eqz (i32.load8_u (i32.const 260))))
      (then (call $reply (local.get $conn) (local.get $conn_len) (i32.const 116) (i32.const 4)))
      (else (call $reply (local.get $conn) (local.get $conn_len)
                  (i32.load (i32.const 264)) (i32.load (i32.const 268))))))
  (func (export "handle")
        (param i32 i32 i32 i32 i32 i32 i32 i64 i32 i32) (result i32)
    (local $op i32)
    (i32.store8 (i32.const 64) (i32.const 0))
    (if (i32.eqz (local.get 2))
      (then
        (i32.store offset=4 (i32.const 64) (i32.const 16))
        (i32.store offset=8 (i32.const 64) (i32.const 25))
        (return (i32.const 64))))
    (i32.store offset=4 (i32.const 64) (i32.const 48))
    (i32.store offset=8 (i32.const 64) (i32.const 2))
    (if (i32.ne (local.get 2) (i32.const 1)) (then (return (i32.const 64))))
    (local.set $op (i32.load8_u offset=43 (local.get 8)))
    (if (i32.eq (local.get $op) (i32.const 115)) ;; s
      (then
        (call $set (i32.const 96) (i32.const 1) (local.get 5) (local.get 6)
                   (i32.const 0) (i64.const 0) (i32.const 256))
        (if (i32.load8_u (i32.const 256))
          (then (call $reply (local.get 5) (local.get 6)
                      (i32.load (i32.const 264)) (i32.load (i32.const 268))))
          (else (call $reply (local.get 5) (local.get 6) (i32.const 112) (i32.const 2))))))
    (if (i32.eq (local.get $op) (i32.const 103)) ;; g
      (then
        (call $get (i32.const 96) (i32.const 1) (i32.const 256))
        (call $reply_value (local.get 5) (local.get 6))))
    (if (i32.eq (local.get $op) (i32.const 110)) ;; n
      (then
        (call $get (i32.const 100) (i32.const 1) (i32.const 256))
        (call $reply_value (local.get 5) (local.get 6))))
    (if (i32.eq (local.get $op) (i32.const 119)) ;; w
      (then
        (call $get (i32.const 104) (i32.const 6) (i32.const 256))
        (call $reply_value (local.get 5) (local.get 6))))
    (if (i32.eq (local.get $op) (i32.const 105)) ;; i: result<s64, _> puts its payload at 8
      (then
        (call $increment (i32.const 100) (i32.const 1) (i64.const 1) (i32.const 256))
        (if (i32.load8_u (i32.const 256))
          (then (call $reply (local.get 5) (local.get 6)
                      (i32.load (i32.const 268)) (i32.load (i32.const 272))))
          (else (call $reply (local.get 5) (local.get 6) (i32.const 112) (i32.const 2))))))
    (if (i32.eq (local.get $op) (i32.const 99)) ;; c
      (then
        (call $cas (i32.const 104) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const 0)
                   (local.get 5) (local.get 6) (i32.const 256))
        (if (i32.load8_u (i32.const 256))
          (then (call $reply (local.get 5) (local.get 6)
                      (i32.load (i32.const 264)) (i32.load (i32.const 268))))
          (else
            (if (i32.load8_u (i32.const 260))
              (then (call $reply (local.get 5) (local.get 6) (i32.const 120) (i32.const 3)))
              (else (call $reply (local.get 5) (local.get 6) (i32.const 124) (i32.const 4))))))))
    (i32.const 64))
  (func (export "cabi_post_handle") (param i32)))
"#;

const SERVICE: &str = "relay";

/// `count` gateway nodes on `redis`, each with the test service.
async fn nodes(root: &Path, redis: &RedisServer, count: usize) -> Vec<GatewayProcess> {
    nodes_with(root, redis, count, HANDLER).await
}

/// `count` gateway nodes on `redis` whose test service runs `handler`.
async fn nodes_with(
    root: &Path,
    redis: &RedisServer,
    count: usize,
    handler: &str,
) -> Vec<GatewayProcess> {
    nodes_with_settings(root, redis, count, handler, "").await
}

/// `count` gateway nodes on `redis` whose test service runs `handler`, with
/// `settings` added to its `service.toml`.
async fn nodes_with_settings(
    root: &Path,
    redis: &RedisServer,
    count: usize,
    handler: &str,
    settings: &str,
) -> Vec<GatewayProcess> {
    let plugins = root.join("plugins");
    std::fs::create_dir_all(plugins.join(SERVICE)).unwrap();
    std::fs::write(
        plugins.join(SERVICE).join("handler.wasm"),
        wat::parse_str(handler).unwrap(),
    )
    .unwrap();
    // A slow cleanup (see the test of a claimer that dies) takes this long.
    std::fs::write(
        plugins.join(SERVICE).join("service.toml"),
        format!("timeout_ms = 1500\n{settings}"),
    )
    .unwrap();
    let cache = root.join("cache");
    let url = redis.url();
    let nodes: Vec<GatewayProcess> = (0..count)
        .map(|_| GatewayProcess::start_listening(&plugins, &cache, &["--cluster", &url], &[]))
        .collect();
    for node in &nodes {
        ready(node).await;
    }
    nodes
}

/// Waits until `node`'s handler has loaded and it holds its lease with its
/// inbox subscribed, as the control listener's health says; its node id.
async fn ready(node: &GatewayProcess) -> String {
    let started = Instant::now();
    loop {
        let (_, health) = get(node, "/healthz").await;
        let cluster = &health["cluster"];
        if health["loaded"] == json!(true)
            && cluster["lease"] == json!(true)
            && cluster["subscribed"] == json!(true)
        {
            return cluster["node"].as_str().unwrap().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "never ready: {health} {:#?}",
            node.all_log_lines()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A reverse-push client whose requests can never hang a test.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn push(node: &GatewayProcess, body: Value) -> (u16, Value) {
    let answer = http()
        .post(format!("http://{}/push/{SERVICE}", node.control))
        .json(&body)
        .send()
        .await
        .expect("an answer, not a hang");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap())
}

async fn send_text(node: &GatewayProcess, id: &str, text: &str) -> (u16, Value) {
    let body = json!({ "websocket": {
        "action": "data send", "secConnectionID": id, "dataType": "text", "data": text,
    }});
    push(node, body).await
}

async fn get(node: &GatewayProcess, path: &str) -> (u16, Value) {
    let answer = http()
        .get(format!("http://{}{path}", node.control))
        .send()
        .await
        .expect("an answer, not a hang");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap())
}

/// The ids `GET /push/<service>` on `node` lists, cluster-wide.
async fn listed(node: &GatewayProcess) -> Vec<String> {
    let (status, body) = get(node, &format!("/push/{SERVICE}")).await;
    assert_eq!(status, 200, "{body}");
    body["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|info| info["secConnectionID"].as_str().unwrap().to_owned())
        .collect()
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects a client to `node` and finds its id: the one id `node`'s own
/// list gained.
async fn connect(node: &GatewayProcess) -> (Client, String) {
    let before = listed(node).await;
    let (client, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws/{SERVICE}", node.public))
            .await
            .expect("WebSocket connect");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let new: Vec<String> = listed(node)
            .await
            .into_iter()
            .filter(|id| !before.contains(id))
            .collect();
        if let [id] = &new[..] {
            return (client, id.clone());
        }
        assert!(
            Instant::now() < deadline,
            "the new connection was never listed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn next_text(client: &mut Client) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("a message within 10 s")
            .expect("connection still open")
            .expect("no protocol error");
        match message {
            Message::Text(text) => return text.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// The members of `room`, cluster-wide, as `GET /push/<service>?group=`
/// on `node` lists them, page by page (`limit` a page).
async fn members(node: &GatewayProcess, limit: usize) -> Result<Vec<String>, (u16, Value)> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/push/{SERVICE}?group=room&limit={limit}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, body) = get(node, &path).await;
        if status != 200 {
            return Err((status, body));
        }
        let page = body["members"].as_array().unwrap();
        assert!(page.len() <= limit, "{body}");
        all.extend(page.iter().map(|id| id.as_str().unwrap().to_owned()));
        match body["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(all),
        }
    }
}

/// A reverse push `data broadcast` of `text` to `room` through `node`.
async fn broadcast(node: &GatewayProcess, text: &str, except: Option<&str>) -> (u16, Value) {
    let mut body = json!({ "websocket": {
        "action": "data broadcast", "group": "room", "dataType": "text", "data": text,
    }});
    if let Some(except) = except {
        body["websocket"]["exceptConnectionID"] = json!(except);
    }
    push(node, body).await
}

/// Asserts that `client` (on `node`) was sent nothing so far: a push sent
/// now through its own node is the next message it gets.
async fn nothing_before_now(node: &GatewayProcess, client: &mut Client, id: &str) {
    assert_eq!(send_text(node, id, "marker").await.0, 200);
    assert_eq!(next_text(client).await, "marker");
}

/// Lines of `nodes` where the handler logged the closing event of `id`
/// with `reason`.
fn cleanup_lines(nodes: &[&GatewayProcess], id: &str, reason: &str) -> Vec<String> {
    let reason = format!(r#""closeReason":"{reason}""#);
    nodes
        .iter()
        .flat_map(|node| node.log_lines("wasmgate::handler"))
        .filter(|line| line.contains("role=cleanup") && line.contains(id) && line.contains(&reason))
        .collect()
}

/// How many times the handler logged the closing event of `id` with
/// `reason` on `nodes`.
fn cleanups(nodes: &[&GatewayProcess], id: &str, reason: &str) -> usize {
    cleanup_lines(nodes, id, reason).len()
}

/// Lines where the handler, in `role`, logged `text` for connection `id`.
fn handler_said(node: &GatewayProcess, role: &str, id: &str, text: &str) -> bool {
    node.log_lines("wasmgate::handler").iter().any(|line| {
        line.contains(&format!("role={role}"))
            && line.contains(&format!("conn={id}"))
            && line.contains(&format!(": {text} "))
    })
}

/// Waits (a hang guard, not a timing claim) until `done` holds.
async fn eventually(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_through_one_node_reaches_a_client_on_another_and_a_close_through_a_third_runs_its_cleanup_once(
) {
    let root = scratch("cluster-push");
    let redis = RedisServer::start(&root);
    let nodes = nodes(&root, &redis, 3).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let (mut client, id) = connect(c).await;
    // Ids name their node, and need no escaping in a URL.
    assert!(id.contains('.'), "{id}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
        "{id}"
    );

    // Every node lists it; a node's own connections need no other node.
    assert!(listed(a).await.contains(&id));
    assert!(listed(b).await.contains(&id));

    let (status, body) = send_text(a, &id, "hello from A").await;
    assert_eq!((status, &body["errNo"]), (200, &json!(0)), "{body}");
    assert_eq!(next_text(&mut client).await, "hello from A");
    // And the client's own messages still echo on C.
    client.send(Message::text("echo")).await.unwrap();
    assert_eq!(next_text(&mut client).await, "echo");

    let (status, body) = get(a, &format!("/push/{SERVICE}/{id}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connection"]["secConnectionID"], json!(id));

    // A figure for the record, not a claim: push to delivery, through the
    // client's own node and through another.
    for (via, name) in [(c, "same node"), (a, "cross node")] {
        let started = Instant::now();
        for n in 0..100 {
            let text = format!("{name} {n}");
            assert_eq!(send_text(via, &id, &text).await.0, 200);
            assert_eq!(next_text(&mut client).await, text);
        }
        eprintln!(
            "{name}: {:?} per push, to delivery",
            started.elapsed() / 100
        );
    }

    let close = json!({ "websocket": { "action": "closing", "secConnectionID": id } });
    let (status, body) = push(b, close).await;
    assert_eq!(status, 200, "{body}");
    let frame = loop {
        match tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("closed within 10 s")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000));
    eventually("the cleanup ran on C", Duration::from_secs(10), || {
        cleanups(&[c], &id, "server") == 1
    })
    .await;

    // Gone now, from anywhere; and the cleanup ran once, on C only.
    let (status, body) = send_text(b, &id, "late").await;
    assert_eq!((status, &body["errNo"]), (404, &json!(2202)), "{body}");
    let (status, body) = get(a, &format!("/push/{SERVICE}/{id}")).await;
    assert_eq!((status, &body["errNo"]), (404, &json!(2202)), "{body}");
    assert_eq!(cleanups(&[a, b, c], &id, "server"), 1);
    assert_eq!(cleanups(&[a, b, c], &id, "node_lost"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_has_each_cleanup_run_once_by_a_survivor_with_its_attributes_and_groups_and_its_ids_are_gone(
) {
    let root = scratch("cluster-kill");
    let redis = RedisServer::start(&root);
    let mut nodes = nodes_with(&root, &redis, 3, GROUPS_HANDLER).await;
    let mut doomed = Vec::new();
    for _ in 0..3 {
        let (client, id) = connect(&nodes[1]).await;
        doomed.push((client, id));
    }
    let (mut survivor_client, survivor_id) = connect(&nodes[0]).await;

    nodes[1].kill();
    let killed_at = Instant::now();
    let (a, c) = (&nodes[0], &nodes[2]);
    for (_, id) in &doomed {
        // Lease TTL (5 s) plus a scan (1 s) plus the cleanups; generous.
        eventually(
            "a survivor ran the cleanup",
            Duration::from_secs(30),
            || cleanups(&[a, c], id, "node_lost") >= 1,
        )
        .await;
    }
    eprintln!(
        "kill -9 to the last node_lost cleanup: {:?}",
        killed_at.elapsed()
    );
    eventually("the claimer finished", Duration::from_secs(10), || {
        !a.log_lines("dead node reaped").is_empty() || !c.log_lines("dead node reaped").is_empty()
    })
    .await;
    // No claimer died: exactly once each, with the attributes register
    // gave, and `groups-of` answering the groups it was in.
    for (_, id) in &doomed {
        let lines = cleanup_lines(&[a, c], id, "node_lost");
        assert_eq!(lines.len(), 1, "{id}");
        assert!(
            lines[0].contains(r#""attributes":{"user":"u1"}"#),
            "{}",
            lines[0]
        );
        assert!(
            handler_said(a, "cleanup", id, "groups: room")
                || handler_said(c, "cleanup", id, "groups: room"),
            "{id}"
        );
        let (status, body) = send_text(a, id, "anyone?").await;
        assert_eq!((status, &body["errNo"]), (404, &json!(2202)), "{body}");
    }
    // The dead node's connections are no longer listed, nor members; the
    // survivor's are.
    let ids = listed(c).await;
    assert!(ids.contains(&survivor_id));
    assert!(doomed.iter().all(|(_, id)| !ids.contains(id)));
    assert_eq!(members(c, 1000).await.unwrap(), [survivor_id.as_str()]);
    let (status, body) = broadcast(c, "still here", None).await;
    assert_eq!((status, &body["delivered"]), (200, &json!(1)), "{body}");
    assert_eq!(next_text(&mut survivor_client).await, "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_local_traffic_flows_and_cross_node_pushes_answer_503_until_it_is_back() {
    let root = scratch("cluster-redis-down");
    let mut redis = RedisServer::start(&root);
    let nodes = nodes(&root, &redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let (mut local, local_id) = connect(a).await;
    let (mut remote, remote_id) = connect(b).await;
    assert_eq!(send_text(a, &remote_id, "before").await.0, 200);
    assert_eq!(next_text(&mut remote).await, "before");

    redis.kill();
    // The inbox notices at once that its connection dropped.
    a.wait_for_log("cluster inbox connection lost", Duration::from_secs(10));
    // Local traffic: echo, and a push to a connection of the same node.
    local.send(Message::text("ping")).await.unwrap();
    assert_eq!(next_text(&mut local).await, "ping");
    assert_eq!(send_text(a, &local_id, "same node").await.0, 200);
    assert_eq!(next_text(&mut local).await, "same node");
    // Across nodes: unavailable, at once rather than after a hang.
    let (status, body) = send_text(a, &remote_id, "lost?").await;
    assert_eq!(
        (status, &body["errNo"]),
        (503, &json!(2206)),
        "{body} {:#?} {:#?}",
        a.all_log_lines(),
        b.all_log_lines()
    );
    let (status, body) = get(a, &format!("/push/{SERVICE}")).await;
    assert_eq!((status, &body["errNo"]), (503, &json!(2206)), "{body}");

    // Back (empty: everything it held is lost) well within the lease TTL.
    redis.run();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = send_text(a, &remote_id, "after").await;
        if status == 200 {
            break;
        }
        assert_eq!((status, &body["errNo"]), (503, &json!(2206)), "{body}");
        assert!(Instant::now() < deadline, "cross-node push never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(next_text(&mut remote).await, "after");
    // Nobody was fenced, and each node's registry was written again.
    assert!(a.log_lines("fenced").is_empty() && b.log_lines("fenced").is_empty());
    // The list answers 503 until Redis knows every node again (a lease TTL
    // after a node found its lease lost), then lists both nodes' clients.
    let deadline = Instant::now() + Duration::from_secs(20);
    let ids = loop {
        let (status, body) = get(b, &format!("/push/{SERVICE}")).await;
        if status == 200 {
            break body["connections"].to_string();
        }
        assert_eq!((status, &body["errNo"]), (503, &json!(2206)), "{body}");
        assert!(Instant::now() < deadline, "the list never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(ids.contains(&local_id) && ids.contains(&remote_id), "{ids}");
    local.send(Message::text("still")).await.unwrap();
    assert_eq!(next_text(&mut local).await, "still");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_past_its_lease_drops_its_connections_without_cleanup_and_rejoins_under_a_new_id(
) {
    let root = scratch("cluster-pause");
    let redis = RedisServer::start(&root);
    let nodes = nodes_with(&root, &redis, 3, GROUPS_HANDLER).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let (mut first, first_id) = connect(b).await;
    let (_second, second_id) = connect(b).await;

    b.signal("STOP");
    for id in [&first_id, &second_id] {
        eventually(
            "a survivor ran the cleanup",
            Duration::from_secs(30),
            || cleanups(&[a, c], id, "node_lost") >= 1,
        )
        .await;
    }
    let (status, body) = send_text(a, &first_id, "anyone?").await;
    assert_eq!((status, &body["errNo"]), (404, &json!(2202)), "{body}");
    // The survivor took them out of their group.
    assert_eq!(members(c, 1000).await.unwrap(), Vec::<String>::new());
    b.signal("CONT");

    // It notices by its own clock, drops the client with 1012, and runs no
    // cleanup itself.
    let frame = loop {
        match tokio::time::timeout(Duration::from_secs(15), first.next())
            .await
            .expect("closed within 15 s of waking")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1012));
    b.wait_for_log("fenced", Duration::from_secs(10));
    b.wait_for_log(
        "connection dropped without cleanup",
        Duration::from_secs(10),
    );
    for id in [&first_id, &second_id] {
        assert_eq!(cleanups(&[b], id, "node_lost"), 0);
        assert_eq!(cleanups(&[a, b, c], id, "node_lost"), 1);
    }
    assert!(b
        .log_lines("wasmgate::handler")
        .iter()
        .all(|line| !line.contains(&first_id) && !line.contains(&second_id)));

    // It rejoined under a new node id: a new client there is reachable
    // from another node.
    let node = ready(b).await;
    assert_ne!(Some(node.as_str()), first_id.split('.').next());
    let (mut again, again_id) = connect(b).await;
    assert!(again_id.starts_with(&format!("{node}.")), "{again_id}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while send_text(a, &again_id, "welcome back").await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the rejoined node is not reachable"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(next_text(&mut again).await, "welcome back");
    // Its new client is in the group, which it subscribed to again.
    assert_eq!(members(a, 1000).await.unwrap(), [again_id.as_str()]);
    let (status, body) = broadcast(a, "to the room", None).await;
    assert_eq!((status, &body["delivered"]), (200, &json!(1)), "{body}");
    assert_eq!(next_text(&mut again).await, "to the room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shut_down_gracefully_runs_its_cleanups_itself_and_no_survivor_runs_them_again() {
    let root = scratch("cluster-shutdown");
    let redis = RedisServer::start(&root);
    let nodes = nodes_with(&root, &redis, 2, GROUPS_HANDLER).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let (mut client, id) = connect(b).await;

    b.signal("TERM");
    let frame = loop {
        match tokio::time::timeout(Duration::from_secs(15), client.next())
            .await
            .expect("closed within 15 s")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1001));
    b.wait_for_log("left the cluster", Duration::from_secs(20));
    assert_eq!(cleanups(&[b], &id, "shutdown"), 1);
    // It deleted its lease: its ids are gone at once, and the list no
    // longer asks it.
    let (status, body) = send_text(a, &id, "bye?").await;
    assert_eq!((status, &body["errNo"]), (404, &json!(2202)), "{body}");
    assert!(!listed(a).await.contains(&id));
    assert_eq!(members(a, 1000).await.unwrap(), Vec::<String>::new());
    // Past the lease TTL and a scan, no survivor has claimed it.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(cleanups(&[a], &id, "node_lost"), 0);
    assert!(a.log_lines("claimed a dead node").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_claimer_dies_mid_reap_another_survivor_runs_the_rest_at_least_once() {
    // Each cleanup logs its event, then spins until its 1.5 s time-out:
    // the claimer is surely killed in the middle of one.
    let slow = HANDLER.replace(
        "(then (call $log (i32.const 2) (local.get 8) (local.get 9))))",
        "(then (call $log (i32.const 2) (local.get 8) (local.get 9)) (loop $spin (br $spin))))",
    );
    assert_ne!(slow, HANDLER);
    let root = scratch("cluster-claimer");
    let redis = RedisServer::start(&root);
    let mut nodes = nodes_with(&root, &redis, 3, &slow).await;
    let mut doomed = Vec::new();
    for _ in 0..3 {
        doomed.push(connect(&nodes[1]).await);
    }
    nodes[1].kill();
    let any_cleanup = |node: &GatewayProcess| {
        doomed
            .iter()
            .any(|(_, id)| cleanups(&[node], id, "node_lost") > 0)
    };
    let started = Instant::now();
    let claimer = loop {
        if let Some(index) = [0, 2].into_iter().find(|&i| any_cleanup(&nodes[i])) {
            break index;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nobody claimed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    nodes[claimer].kill();
    let other = 2 - claimer;
    let (a, c) = (&nodes[0], &nodes[2]);
    for (_, id) in &doomed {
        // The claim expires (10 s), then the other survivor runs the rest.
        eventually("every cleanup ran", Duration::from_secs(60), || {
            cleanups(&[a, c], id, "node_lost") >= 1
        })
        .await;
    }
    // Its reap of the first dead node ends (it reaps the claimer too).
    let dead = doomed[0].1.split('.').next().unwrap().to_owned();
    eventually(
        "the other survivor finished",
        Duration::from_secs(30),
        || {
            nodes[other]
                .log_lines("dead node reaped")
                .iter()
                .any(|line| line.contains(&format!("node={dead} ")))
        },
    )
    .await;
    let runs: usize = doomed
        .iter()
        .map(|(_, id)| cleanups(&[a, c], id, "node_lost"))
        .sum();
    eprintln!(
        "node_lost cleanups: {runs} for 3 connections (duplicates: {})",
        runs - 3
    );
    // At least once each; a duplicate only for the one the claimer was
    // running when it died.
    assert!((3..=4).contains(&runs), "{runs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_the_group_on_every_node_but_the_sender_and_members_and_groups_of_answer_cluster_wide(
) {
    let root = scratch("cluster-groups");
    let redis = RedisServer::start(&root);
    let nodes = nodes_with(&root, &redis, 3, GROUPS_HANDLER).await;
    // Two clients on each node, each joined to `room` by register.
    let mut clients = Vec::new();
    for node in &nodes {
        for _ in 0..2 {
            let (client, id) = connect(node).await;
            clients.push((node, client, id));
        }
    }
    let mut ids: Vec<String> = clients.iter().map(|(_, _, id)| id.clone()).collect();
    ids.sort();
    // Every node lists every member, sorted, whole or in pages.
    for node in &nodes {
        assert_eq!(members(node, 1000).await.unwrap(), ids);
    }
    assert_eq!(members(&nodes[0], 4).await.unwrap(), ids);
    // Another node's connection, through its node: its groups and attributes.
    let (status, body) = get(&nodes[0], &format!("/push/{SERVICE}/{}", clients[5].2)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connection"]["groups"], json!(["room"]));
    assert_eq!(body["connection"]["attributes"], json!({"user": "u1"}));

    // A client on B speaks: the five others, on all three nodes, get it
    // (the event its handler broadcast), the sender does not.
    let sender = 2;
    let sender_id = clients[sender].2.clone();
    clients[sender]
        .1
        .send(Message::text("hello from B"))
        .await
        .unwrap();
    for (n, (_, client, _)) in clients.iter_mut().enumerate() {
        if n != sender {
            let text = next_text(client).await;
            assert!(
                text.contains("hello from B") && text.contains(&sender_id),
                "{text}"
            );
        }
    }
    let (node, client, id) = &mut clients[sender];
    nothing_before_now(node, client, id).await;
    // Its handler then read `members` and each member's `groups-of`: every
    // member of every node, each in `room` (logged by the handler).
    eventually(
        "the handler read every member",
        Duration::from_secs(10),
        || {
            ids.iter()
                .all(|id| handler_said(&nodes[1], "transfer", &sender_id, id))
        },
    )
    .await;

    // A backend's broadcast through C, except a client of A.
    let except = clients[0].2.clone();
    let (status, body) = broadcast(&nodes[2], "from the backend", Some(&except)).await;
    assert_eq!((status, &body["delivered"]), (200, &json!(5)), "{body}");
    for (n, (node, client, id)) in clients.iter_mut().enumerate() {
        if n == 0 {
            nothing_before_now(node, client, id).await;
        } else {
            assert_eq!(next_text(client).await, "from the backend");
        }
    }

    // A client that goes away leaves the group on every node.
    let (_, mut gone, gone_id) = clients.pop().unwrap();
    gone.close(None).await.unwrap();
    let left: Vec<String> = ids.iter().filter(|id| **id != gone_id).cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while members(&nodes[0], 1000).await.unwrap() != left {
        assert!(
            Instant::now() < deadline,
            "the closed client is still listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = broadcast(&nodes[0], "fewer", None).await;
    assert_eq!((status, &body["delivered"]), (200, &json!(5)), "{body}");
    for (_, client, _) in &mut clients {
        assert_eq!(next_text(client).await, "fewer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_nodes_write_their_groups_again_and_broadcasts_recover_by_themselves()
{
    let root = scratch("cluster-groups-redis");
    let mut redis = RedisServer::start(&root);
    let nodes = nodes_with(&root, &redis, 2, GROUPS_HANDLER).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let (mut on_a, a_id) = connect(a).await;
    let (mut on_b, b_id) = connect(b).await;
    let (status, body) = broadcast(a, "before", None).await;
    assert_eq!((status, &body["delivered"]), (200, &json!(2)), "{body}");
    assert_eq!(next_text(&mut on_a).await, "before");
    assert_eq!(next_text(&mut on_b).await, "before");

    redis.kill();
    a.wait_for_log("cluster inbox connection lost", Duration::from_secs(10));
    // Unavailable, at once: nothing is delivered, not even on A.
    let (status, body) = broadcast(a, "lost", None).await;
    assert_eq!((status, &body["errNo"]), (503, &json!(2206)), "{body}");
    let (status, body) = members(b, 1000).await.unwrap_err();
    assert_eq!((status, &body["errNo"]), (503, &json!(2206)), "{body}");

    // Back, empty: the nodes write their groups again by themselves, and
    // the list answers 503 rather than a partial one meanwhile.
    redis.run();
    let mut both = vec![a_id.clone(), b_id.clone()];
    both.sort();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match members(b, 1000).await {
            Ok(listed) if listed == both => break,
            Ok(_) => {}
            Err((status, body)) => assert_eq!((status, &body["errNo"]), (503, &json!(2206))),
        }
        assert!(
            Instant::now() < deadline,
            "the groups were never written again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Broadcasts recover too, B resubscribed by itself: at most once each
    // meanwhile (one published before B resubscribed is lost to it).
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        sent += 1;
        let (status, body) = broadcast(a, &format!("after {sent}"), None).await;
        if status == 200 {
            assert_eq!(next_text(&mut on_a).await, format!("after {sent}"));
            if let Ok(text) =
                tokio::time::timeout(Duration::from_millis(500), next_text(&mut on_b)).await
            {
                break text;
            }
        } else {
            assert_eq!((status, &body["errNo"]), (503, &json!(2206)), "{body}");
        }
        assert!(
            Instant::now() < deadline,
            "broadcasts never reached B again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, body) = broadcast(a, "final", None).await;
    assert_eq!((status, &body["delivered"]), (200, &json!(2)), "{body}");
    assert_eq!(next_text(&mut on_a).await, "final");
    // Each at most once, in order.
    let mut received = vec![first];
    loop {
        let text = next_text(&mut on_b).await;
        if text == "final" {
            break;
        }
        received.push(text);
    }
    let numbers: Vec<u32> = received
        .iter()
        .map(|text| text.strip_prefix("after ").unwrap().parse().unwrap())
        .collect();
    assert!(
        numbers.windows(2).all(|pair| pair[0] < pair[1]),
        "{numbers:?}"
    );
    assert!(numbers.iter().all(|&n| n <= sent), "{numbers:?}");

    // New members join across the restart as before.
    let (mut late, late_id) = connect(b).await;
    let (status, body) = broadcast(a, "welcome", Some(&a_id)).await;
    assert_eq!((status, &body["delivered"]), (200, &json!(2)), "{body}");
    assert_eq!(next_text(&mut on_b).await, "welcome");
    assert_eq!(next_text(&mut late).await, "welcome");
    assert!(members(a, 1000).await.unwrap().contains(&late_id));
}

/// Sends `text` and waits for the answer.
async fn ask(client: &mut Client, text: &str) -> String {
    client.send(Message::text(text)).await.unwrap();
    next_text(client).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kv_write_on_one_node_is_read_on_another_and_racing_writes_count_every_success_once() {
    let root = scratch("cluster-kv");
    let mut redis = RedisServer::start(&root);
    let nodes = nodes_with(&root, &redis, 3, KV_HANDLER).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);

    // Through real handlers: written on A, read on C.
    let (mut writer, writer_id) = connect(a).await;
    assert_eq!(ask(&mut writer, "s").await, "ok");
    let (mut reader, _) = connect(c).await;
    assert_eq!(ask(&mut reader, "g").await, writer_id);

    // Clients of A and B increment one counter at once: it ends at the
    // number of increments acknowledged, no more, no fewer.
    let mut counters = Vec::new();
    for node in [a, b, a, b, a, b] {
        counters.push(connect(node).await.0);
    }
    let tasks: Vec<_> = counters
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let mut acknowledged = 0;
                for _ in 0..25 {
                    let answer = ask(&mut client, "i").await;
                    assert_eq!(answer, "ok");
                    acknowledged += 1;
                }
                acknowledged
            })
        })
        .collect();
    let mut acknowledged = 0;
    for task in tasks {
        acknowledged += task.await.unwrap();
    }
    assert_eq!(acknowledged, 150);
    assert_eq!(ask(&mut reader, "n").await, "150");

    // Clients of all three nodes claim one key at once: one wins, and every
    // node reads the winner.
    let mut racers = Vec::new();
    for node in [a, b, c, a, b, c, a, b, c] {
        racers.push(connect(node).await);
    }
    for (client, _) in &mut racers {
        client.send(Message::text("c")).await.unwrap();
    }
    let mut winners = Vec::new();
    for (client, id) in &mut racers {
        match next_text(client).await.as_str() {
            "won" => winners.push(id.clone()),
            "lost" => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    for (client, _) in racers.iter_mut().take(3) {
        assert_eq!(ask(client, "w").await, winners[0]);
    }

    // Redis gone: the call fails at once with 2410's message, the node
    // keeps serving, and the store is back as soon as Redis is.
    redis.kill();
    let answer = ask(&mut reader, "i").await;
    assert!(
        answer.starts_with("the state store (Redis) cannot be reached now"),
        "{answer}"
    );
    redis.run();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ask(&mut reader, "i").await != "ok" {
        assert!(Instant::now() < deadline, "the store never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The times of the timer ticks `node`'s handler ran (each logged line's
/// `"Time"`).
fn ticks_run(node: &GatewayProcess) -> Vec<String> {
    node.log_lines("wasmgate::handler")
        .iter()
        .filter(|line| line.contains("role=timer"))
        .filter_map(|line| {
            let start = line.find(r#""Time":""#)? + r#""Time":""#.len();
            let end = start + line[start..].find('"')?;
            Some(line[start..end].to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_tick_fires_on_one_node_of_the_cluster_and_on_none_while_redis_is_down() {
    let root = scratch("cluster-timer");
    let mut redis = RedisServer::start(&root);
    let settings = "[[timers]]\nname = \"everySecond\"\ncron = \"* * * * * * *\"\n";
    let nodes = nodes_with_settings(&root, &redis, 3, HANDLER, settings).await;

    // Every node schedules the timer; each tick runs on exactly one.
    let all_ticks = || -> Vec<String> { nodes.iter().flat_map(ticks_run).collect() };
    eventually("4 ticks run", Duration::from_secs(30), || {
        all_ticks().len() >= 4
    })
    .await;
    assert_each_tick_ran_once(&all_ticks());
    for node in &nodes {
        assert_eq!(
            node.log_lines("timer scheduled").len(),
            1,
            "every node schedules the timer"
        );
    }

    // With Redis down no node can claim a tick: it runs nowhere, logged.
    redis.kill();
    let before = all_ticks().len();
    eventually(
        "a tick skipped because Redis did not answer",
        Duration::from_secs(30),
        || {
            nodes.iter().any(|node| {
                !node
                    .log_lines("Redis did not answer, so no node")
                    .is_empty()
            })
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // A tick claimed just before the kill may still be running.
    assert!(
        all_ticks().len() <= before + 1,
        "ticks ran with Redis down: {:?}",
        all_ticks()
    );

    // Redis back: ticks run again, still once each.
    redis.run();
    let before = all_ticks().len();
    eventually("ticks again", Duration::from_secs(30), || {
        all_ticks().len() >= before + 2
    })
    .await;
    assert_each_tick_ran_once(&all_ticks());
}

/// No tick time appears twice among `ticks` (collected from every node).
fn assert_each_tick_ran_once(ticks: &[String]) {
    let mut distinct = ticks.to_vec();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        ticks.len(),
        "a tick ran more than once in the cluster: {ticks:?}"
    );
}
