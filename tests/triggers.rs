//! The HTTP API trigger and the timer trigger through a real gateway: the
//! integration request and response, every malformed answer, limits,
//! failures, the REST-to-socket bridge, handlers built before the two
//! roles, and timers seen by WebSocket clients, through hot reload.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use wasmgate_tests::*;

/// The model's error body for an answer that is not an integration response.
const MALFORMED: &str = r#"{"errno":403,"error":"Invalid scf response format. please check your scf response format."}"#;

fn web() -> ServiceSpec {
    ServiceSpec::new("web").handler("web")
}

/// A request to the HTTP trigger: status, headers and body.
async fn request(
    gateway: &TestGateway,
    method: &str,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let response = http()
        .request(method.parse().unwrap(), gateway.url(path))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

fn as_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

#[tokio::test]
async fn an_http_request_becomes_the_integration_request_field_for_field() {
    let gateway =
        TestGateway::start(&[web().toml(r#"routes = ["/items/{id}", "/rooms/{room}/{n}"]"#)]).await;
    let (status, headers, body) = request(
        &gateway,
        "POST",
        "/http/web/rooms/caf%C3%A9/7?tag=a&tag=b&one=1",
        r#"{"test":"body"}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let event = as_json(&body);
    let context = &event["requestContext"];
    assert_eq!(context["serviceId"], "web");
    assert_eq!(context["path"], "/rooms/{room}/{n}");
    assert_eq!(context["httpMethod"], "POST");
    assert_eq!(context["identity"], json!({}));
    assert_eq!(context["sourceIp"], "127.0.0.1");
    assert_eq!(context["stage"], "release");
    assert_eq!(context["requestId"].as_str().unwrap().len(), 36);
    assert_eq!(event["path"], "/rooms/caf%C3%A9/7");
    assert_eq!(event["httpMethod"], "POST");
    assert_eq!(event["body"], r#"{"test":"body"}"#);
    assert_eq!(event["isBase64Encoded"], false);
    assert_eq!(event["pathParameters"], json!({"room": "café", "n": "7"}));
    assert_eq!(event["queryString"], json!({"tag": ["a", "b"], "one": "1"}));
    assert_eq!(event["queryStringParameters"], event["queryString"]);
    assert_eq!(event["headerParameters"], json!({}));
    assert_eq!(event["stageVariables"], json!({"stage": "release"}));
    assert!(event["headers"]["host"].is_string());

    // No template matches: the path itself, no parameters.
    let (_, _, body) = request(&gateway, "GET", "/http/web/elsewhere", "").await;
    let event = as_json(&body);
    assert_eq!(event["requestContext"]["path"], "/elsewhere");
    assert_eq!(event["pathParameters"], json!({}));
    assert_eq!(event["httpMethod"], "GET");
    assert_eq!(event["body"], "");
    // The service's own root.
    let (_, _, body) = request(&gateway, "DELETE", "/http/web", "").await;
    assert_eq!(as_json(&body)["path"], "/");

    // A body that is not UTF-8 arrives in Base64.
    let (_, _, body) = request(&gateway, "PUT", "/http/web/items/1", vec![0xffu8, 0, 1]).await;
    let event = as_json(&body);
    assert_eq!(event["isBase64Encoded"], true);
    assert_eq!(event["body"], "/wAB");
    assert_eq!(event["pathParameters"], json!({"id": "1"}));
    gateway.shutdown().await;
}

#[tokio::test]
async fn html_binary_and_repeated_header_answers_reach_the_client() {
    let gateway = TestGateway::start(&[web()]).await;
    let (status, headers, body) = request(&gateway, "GET", "/http/web/html", "").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html");
    assert_eq!(
        body,
        b"<html><body><h1>Heading</h1><p>Paragraph.</p></body></html>"
    );

    let (status, headers, body) = request(&gateway, "GET", "/http/web/binary", "").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(body, (0..=255u8).collect::<Vec<_>>());

    let (status, headers, _) = request(&gateway, "GET", "/http/web/headers", "").await;
    assert_eq!(status, 200);
    let keys: Vec<&str> = headers
        .get_all("key")
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    assert_eq!(keys, ["value1", "value2", "value3"]);
    assert_eq!(headers["x-one"], "1");

    // The model's sample answer, as a handler returns it, unchanged.
    let sample = r#"{"isBase64Encoded": false, "statusCode": 200,
        "headers": {"Content-Type": "text/html", "Key": ["value1", "value2", "value3"]},
        "body": "<html><body><h1>Heading</h1><p>Paragraph.</p></body></html>"}"#;
    let (status, headers, body) = request(&gateway, "POST", "/http/web/raw", sample).await;
    assert_eq!(status, 200);
    assert_eq!(headers.get_all("key").iter().count(), 3);
    assert!(body.starts_with(b"<html>"));
    // Other statuses and a Base64 body; framing headers are the gateway's.
    let (status, headers, body) = request(
        &gateway,
        "POST",
        "/http/web/raw",
        r#"{"statusCode":418,"isBase64Encoded":true,"body":"/wA=","headers":{"Content-Length":"99"}}"#,
    )
    .await;
    assert_eq!(status, 418);
    assert_eq!(body, [0xff, 0]);
    assert_eq!(headers["content-length"], "2");
    gateway.shutdown().await;
}

#[tokio::test]
async fn every_malformed_answer_gets_the_models_502() {
    let gateway = TestGateway::start(&[web()]).await;
    for answer in [
        "not json",
        "[1,2]",
        "null",
        "{}",
        r#"{"body":"no status"}"#,
        r#"{"statusCode":"200"}"#,
        r#"{"statusCode":200.5}"#,
        r#"{"statusCode":100}"#,
        r#"{"statusCode":600}"#,
        r#"{"statusCode":200,"body":{"not":"a string"}}"#,
        r#"{"statusCode":200,"isBase64Encoded":"true","body":""}"#,
        r#"{"statusCode":200,"isBase64Encoded":true,"body":"%%%"}"#,
        r#"{"statusCode":200,"headers":["a"]}"#,
        r#"{"statusCode":200,"headers":{"bad name":"x"}}"#,
        r#"{"statusCode":200,"headers":{"a":1}}"#,
        r#"{"statusCode":200,"headers":{"a":["b",["c"]]}}"#,
        r#"{"statusCode":200,"headers":{"a":"b\nc"}}"#,
    ] {
        let (status, headers, body) = request(&gateway, "POST", "/http/web/raw", answer).await;
        assert_eq!(status, 502, "{answer}");
        assert_eq!(headers["content-type"], "application/json", "{answer}");
        assert_eq!(String::from_utf8(body).unwrap(), MALFORMED, "{answer}");
    }
    let refused = wait_for_log(&["service=web", "handler answer refused"], 17).await;
    assert!(refused.len() >= 17, "{refused:?}");
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_failed_http_handler_answers_502_or_504_with_an_errno() {
    let gateway = TestGateway::start(&[web().toml("timeout_ms = 300")]).await;
    for (path, status, err_no) in [
        ("/http/web/trap", 502, 2601),
        ("/http/web/err", 502, 2601),
        ("/http/web/loop", 504, 2602),
    ] {
        let (got, _, body) = request(&gateway, "GET", path, "").await;
        assert_eq!(got, status, "{path}");
        let body = as_json(&body);
        assert_eq!(body["errNo"], err_no, "{path}: {body}");
        // The guest's own words stay in the log.
        assert!(!body["errMsg"].as_str().unwrap().contains("web:"), "{body}");
    }
    // The service keeps serving.
    let (status, _, _) = request(&gateway, "GET", "/http/web/html", "").await;
    assert_eq!(status, 200);
    // No such service, no handler for the role.
    let (status, _, body) = request(&gateway, "GET", "/http/nobody/x", "").await;
    assert_eq!(
        (status, as_json(&body)["errNo"].clone()),
        (404, json!(2201))
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413_without_being_read() {
    let gateway = TestGateway::start(&[web().toml("max_http_body_bytes = 1024")]).await;
    let (status, _, _) = request(&gateway, "POST", "/http/web/x", vec![b'a'; 1024]).await;
    assert_eq!(status, 200);
    let (status, _, body) = request(&gateway, "POST", "/http/web/x", vec![b'a'; 1025]).await;
    assert_eq!(status, 413);
    assert_eq!(as_json(&body)["errNo"], 2006);
    // Chunked, without a declared length: cut off at the limit.
    let chunks =
        futures_util::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b'b'; 512])));
    let (status, _, body) = request(
        &gateway,
        "POST",
        "/http/web/x",
        reqwest::Body::wrap_stream(chunks),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(as_json(&body)["errNo"], 2006);
    // A declared 100 MB body: answered at once, before a byte of it is sent.
    let mut socket = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    socket
        .write_all(b"POST /http/web/x HTTP/1.1\r\nhost: x\r\ncontent-length: 100000000\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut answer))
        .await
        .expect("an answer before the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("2006"), "{answer}");
    gateway.shutdown().await;
}

/// Sends `head` and `body` on a raw socket (then, if `half_close`, shuts
/// the write side) and returns the first bytes of the answer.
async fn raw_request(gateway: &TestGateway, head_and_body: &[u8], half_close: bool) -> String {
    let mut socket = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    socket.write_all(head_and_body).await.unwrap();
    if half_close {
        socket.shutdown().await.unwrap();
    }
    let mut answer = vec![0u8; 2048];
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

#[tokio::test]
async fn a_malformed_chunked_body_gets_400_and_one_that_ends_early_408() {
    let gateway = TestGateway::start(&[web()]).await;
    let head = "POST /http/web/x HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n";
    // A chunk size line that is not hexadecimal.
    let answer = raw_request(
        &gateway,
        format!("{head}zz\r\nabc\r\n0\r\n\r\n").as_bytes(),
        false,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"errNo\":2606"), "{answer}");
    // A chunk announced as 16 bytes, then the client stops sending.
    let answer = raw_request(&gateway, format!("{head}10\r\nabc").as_bytes(), true).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"errNo\":2605"), "{answer}");
    // The service still answers a well-formed chunked request.
    let answer = raw_request(
        &gateway,
        format!("{head}3\r\nabc\r\n0\r\n\r\n").as_bytes(),
        false,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_http_handler_reaches_the_services_websocket_clients() {
    let gateway = TestGateway::start(&[
        web().toml(r#"routes = ["/broadcast/{group}", "/push/{id}", "/close/{id}"]"#)
    ])
    .await;
    let mut alice = gateway.connect("web?group=room").await;
    let mut bob = gateway.connect("web?group=room").await;
    let mut carol = gateway.connect("web").await;

    // REST to socket: a POST broadcasts into the room.
    let (status, _, body) =
        request(&gateway, "POST", "/http/web/broadcast/room", "hello room").await;
    assert_eq!(status, 200);
    assert_eq!(as_json(&body)["delivered"], 2);
    assert_eq!(next_text(&mut alice).await, "hello room");
    assert_eq!(next_text(&mut bob).await, "hello room");

    // A push to one connection, then a close of another.
    let carol_id = ask(&mut carol, "id").await;
    let path = format!("/http/web/push/{}", urlencode(&carol_id));
    let (_, _, body) = request(&gateway, "POST", &path, "just you").await;
    assert_eq!(as_json(&body)["errNo"], 0);
    assert_eq!(next_text(&mut carol).await, "just you");
    let bob_id = ask(&mut bob, "id").await;
    let path = format!("/http/web/close/{}", urlencode(&bob_id));
    let (_, _, body) = request(&gateway, "POST", &path, "").await;
    assert_eq!(as_json(&body)["errNo"], 0);
    assert_eq!(close_code(&mut bob).await, Some(1000));
    // Another service's id, or a gone one, is not found.
    let (_, _, body) = request(&gateway, "POST", &path, "").await;
    assert_eq!(as_json(&body)["errNo"], 2202);
    gateway.shutdown().await;
}

/// Percent-encodes a connection id for a path segment.
fn urlencode(id: &str) -> String {
    id.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

#[tokio::test]
async fn a_handler_built_before_the_triggers_keeps_serving_its_sockets() {
    let gateway = TestGateway::start(&[ServiceSpec::new("old")
        .handler("before-triggers")
        .toml("[[timers]]\nname = \"tick\"\ncron = \"* * * * * * *\"")])
    .await;
    let mut client = gateway.connect("old").await;
    assert_eq!(ask(&mut client, "still here").await, "still here");
    let (status, _, body) = request(&gateway, "GET", "/http/old/anything", "").await;
    assert_eq!(status, 501);
    let body = as_json(&body);
    assert_eq!(body["errNo"], 2603);
    assert!(
        body["errMsg"]
            .as_str()
            .unwrap()
            .contains("built before the http role"),
        "{body}"
    );
    // Its timer is not run: each tick says why (a tick before the handler
    // loaded says that instead, so wait for one that came after).
    let failed = wait_for_log(
        &[
            "service=old",
            "timer=tick",
            "timer run failed",
            "built before the timer role",
        ],
        1,
    )
    .await;
    assert!(
        !failed.is_empty(),
        "no tick refused as built before the timer role"
    );
    // The admin route shows which roles it serves.
    let (_, services) = get_json(&gateway.control_url("/admin/services")).await;
    let roles = &services["services"][0]["roles"];
    assert_eq!(roles["transfer"], "handler.wasm");
    assert_eq!(roles["http"], Value::Null);
    gateway.shutdown().await;
}

/// The tick lines (`tick <name> <time> ...`) a client receives within
/// `window`.
async fn ticks_within(client: &mut Client, window: Duration) -> Vec<String> {
    let mut ticks = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, client.next()).await {
        if let Ok(Message::Text(text)) = message {
            ticks.push(text.as_str().to_owned());
        }
    }
    ticks
}

#[tokio::test]
async fn a_timer_every_second_reaches_a_websocket_client_once_per_tick() {
    let gateway = TestGateway::start(&[web()
        .toml("[[timers]]\nname = \"EverySecond\"\ncron = \"* * * * * * *\"\nmessage = \"hi\"")])
    .await;
    let mut client = gateway.connect("web?group=ticks").await;
    let ticks = ticks_within(&mut client, Duration::from_millis(3500)).await;
    let times: BTreeSet<&str> = ticks
        .iter()
        .map(|tick| tick.split(' ').nth(2).unwrap())
        .collect();
    assert!(times.len() >= 3, "{ticks:?}");
    assert_eq!(times.len(), ticks.len(), "a tick came twice: {ticks:?}");
    for tick in &ticks {
        let parts: Vec<&str> = tick.split(' ').collect();
        assert_eq!(parts[0], "tick");
        assert_eq!(parts[1], "EverySecond");
        assert!(parts[2].ends_with('Z') && parts[2].len() == 20, "{tick}");
        assert_eq!(parts[3], "hi");
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_timer_follows_hot_reload_and_stops_with_its_service() {
    let gateway = TestGateway::start(&[web()]).await;
    let dir = gateway.plugins.path().join("web");
    let mut client = gateway.connect("web?group=ticks").await;
    assert!(ticks_within(&mut client, Duration::from_millis(1500))
        .await
        .is_empty());

    // Added: ticks begin.
    install(
        &dir,
        "service.toml",
        b"[[timers]]\nname = \"added\"\ncron = \"* * * * * * *\"\n",
    );
    wait_for_log(&["service=web", "timer=added", "timer scheduled"], 1).await;
    let ticks = ticks_within(&mut client, Duration::from_millis(2500)).await;
    assert!(
        ticks.iter().any(|tick| tick.starts_with("tick added ")),
        "{ticks:?}"
    );

    // Changed: the new name ticks, the old one stops at once.
    install(
        &dir,
        "service.toml",
        b"[[timers]]\nname = \"renamed\"\ncron = \"* * * * * * *\"\n",
    );
    let removed = wait_for_log(&["service=web", "timer=added", "timer removed"], 1).await;
    let ticks = ticks_within(&mut client, Duration::from_millis(2500)).await;
    assert!(
        ticks.iter().any(|tick| tick.starts_with("tick renamed ")),
        "{ticks:?}"
    );
    // A tick of the old name that fired before the change may still land;
    // none of a later second does. Both times read `YYYY-MM-DDTHH:MM:SS`
    // first, so they compare as text.
    let removed_at = &removed[0][..19];
    let late: Vec<_> = ticks
        .iter()
        .filter_map(|tick| tick.strip_prefix("tick added "))
        .filter(|time| &time[..19] > removed_at)
        .collect();
    assert!(late.is_empty(), "removed at {removed_at}: {ticks:?}");

    // Removed from the table: no more ticks.
    install(&dir, "service.toml", b"");
    wait_for_log(&["service=web", "timer=renamed", "timer removed"], 1).await;
    // A tick already on its way may still land.
    let _ = ticks_within(&mut client, Duration::from_millis(300)).await;
    assert!(ticks_within(&mut client, Duration::from_millis(2000))
        .await
        .is_empty());
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_removed_service_stops_its_timers() {
    let gateway = TestGateway::start(&[ServiceSpec::new("gone")
        .handler("web")
        .toml("[[timers]]\nname = \"doomed\"\ncron = \"* * * * * * *\"\nmessage = \"fail\"")])
    .await;
    wait_for_log(&["service=gone", "timer=doomed", "timer run failed"], 1).await;
    std::fs::remove_dir_all(gateway.plugins.path().join("gone")).unwrap();
    wait_for_log(&["service=gone", "timer=doomed", "timer removed"], 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = log_lines(&["service=gone", "timer=doomed", "timer run failed"]).len();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let after = log_lines(&["service=gone", "timer=doomed", "timer run failed"]).len();
    assert_eq!(before, after, "the timer kept firing");
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_timer_whose_handler_failed_to_load_skips_its_ticks_without_calling() {
    let gateway = TestGateway::start(&[ServiceSpec::new("tick-broken")
        .bytes("handler.wasm", b"\0asm but not really".to_vec())
        .toml("[[timers]]\nname = \"orphan\"\ncron = \"* * * * * * *\"")])
    .await;
    let lines = wait_for_log(
        &[
            "service=tick-broken",
            "timer=orphan",
            "timer tick skipped: the handler file failed to load",
        ],
        2,
    )
    .await;
    assert!(
        lines.iter().all(|line| line.contains("handler.wasm")),
        "{lines:?}"
    );
    // Skipped before any call: no call was attempted, none failed.
    assert!(log_lines(&["service=tick-broken", "timer run failed"]).is_empty());
    assert!(log_lines(&["service=tick-broken", "handler call failed"]).is_empty());
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_tick_during_the_previous_run_is_skipped_and_logged() {
    let gateway = TestGateway::start(&[ServiceSpec::new("slow")
        .handler("web")
        .toml("[[timers]]\nname = \"slowpoke\"\ncron = \"* * * * * * *\"\nmessage = \"slow\"")])
    .await;
    let skipped = wait_for_log(&["service=slow", "timer=slowpoke", "timer tick skipped"], 1).await;
    assert!(!skipped.is_empty());
    gateway.shutdown().await;
}

/// The next text message that is not a time of the clock's ticks.
async fn next_non_tick(client: &mut Client) -> String {
    loop {
        let text = next_text(client).await;
        if !(text.len() == 20 && text.ends_with('Z')) {
            return text;
        }
    }
}

#[tokio::test]
async fn the_clock_example_ticks_answers_now_and_says_what_is_posted() {
    let gateway = TestGateway::start(&[ServiceSpec::new("clock")
        .handler("clock")
        .toml(include_str!("../plugins/clock/service.toml"))])
    .await;
    let mut client = gateway.connect("clock").await;
    let tick = next_text(&mut client).await;
    assert!(tick.len() == 20 && tick.ends_with('Z'), "{tick}");
    let (status, _, body) = request(&gateway, "GET", "/http/clock/now", "").await;
    assert_eq!(status, 200);
    let now = as_json(&body)["time"].as_str().unwrap().to_owned();
    assert!(now.len() == 20 && now.starts_with("20"), "{now}");
    let (status, _, body) = request(&gateway, "POST", "/http/clock/say", "hello, clock").await;
    assert_eq!(status, 200);
    assert_eq!(as_json(&body)["delivered"], 1);
    assert_eq!(next_non_tick(&mut client).await, "hello, clock");
    let (status, _, _) = request(&gateway, "GET", "/http/clock/nowhere", "").await;
    assert_eq!(status, 404);
    gateway.shutdown().await;
}

#[tokio::test]
async fn the_chat_example_lists_its_rooms_and_their_members() {
    let gateway = TestGateway::start(&[ServiceSpec::new("chat").handler("chat")]).await;
    let (_, rooms) = get_json(&gateway.url("/http/chat/rooms")).await;
    assert_eq!(rooms, json!({"rooms": []}));
    let mut a = gateway.connect("chat?room=kitchen").await;
    let mut b = gateway.connect("chat?room=kitchen").await;
    let mut c = gateway.connect("chat").await;
    for client in [&mut a, &mut b, &mut c] {
        next_text(client).await;
    }
    let (status, rooms) = get_json(&gateway.url("/http/chat/rooms")).await;
    assert_eq!(status, 200);
    assert_eq!(
        rooms,
        json!({"rooms": [{"room": "kitchen", "members": 2}, {"room": "lobby", "members": 1}]})
    );
    drop(c);
    // Once its last member has left, a room is no longer listed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, rooms) = get_json(&gateway.url("/http/chat/rooms")).await;
        if rooms == json!({"rooms": [{"room": "kitchen", "members": 2}]}) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rooms}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn invoke_runs_an_integration_request_and_a_timer_event() {
    let request = json!({
        "requestContext": {"serviceId": "local", "path": "/html", "httpMethod": "GET", "requestId": "r",
                           "identity": {}, "sourceIp": "127.0.0.1", "stage": "release"},
        "headers": {}, "body": "", "isBase64Encoded": false, "pathParameters": {},
        "queryStringParameters": {}, "headerParameters": {}, "stageVariables": {"stage": "release"},
        "path": "/html", "queryString": {}, "httpMethod": "GET"
    });
    let outcome = wasmgate::invoke(&wasm("web"), &request.to_string(), "local", None)
        .await
        .unwrap();
    let answer: Value = serde_json::from_str(&outcome.result.unwrap()).unwrap();
    assert_eq!(answer["statusCode"], 200);
    assert_eq!(answer["headers"]["Content-Type"], "text/html");

    let tick =
        json!({"Type": "Timer", "TriggerName": "t", "Time": "2019-02-21T11:49:00Z", "Message": ""});
    let outcome = wasmgate::invoke(&wasm("web"), &tick.to_string(), "local", None)
        .await
        .unwrap();
    assert_eq!(outcome.result.unwrap(), "{}");
    let failing = json!({"Type": "Timer", "TriggerName": "t", "Time": "2019-02-21T11:49:00Z", "Message": "fail"});
    let outcome = wasmgate::invoke(&wasm("web"), &failing.to_string(), "local", None)
        .await
        .unwrap();
    assert!(outcome.result.is_err());

    // A handler built before the two roles: invoke says so.
    let error = wasmgate::invoke(&wasm("before-triggers"), &tick.to_string(), "local", None)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("built before the timer role"),
        "{error}"
    );
    let report = wasmgate::check::check(&wasm("before-triggers")).unwrap();
    assert!(report.fits(), "{report}");
    assert_eq!(
        report.roles,
        [
            wasmgate::protocol::Role::Register,
            wasmgate::protocol::Role::Transfer,
            wasmgate::protocol::Role::Cleanup
        ]
    );
}
