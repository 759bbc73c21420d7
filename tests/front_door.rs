//! The front door under abuse, with real sockets: idle and half-sent
//! requests, caps per address and in all, handshakes that never finish,
//! connections that only ping or never answer, cross-origin pushes, routes
//! asked of the wrong listener, and oversized request heads.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use wasmgate_tests::*;

/// A TCP connection to `addr` from source address `from`.
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

/// A WebSocket upgrade of `/ws/<service>` from source address `from`: the
/// refusal's status and body, or `None` when it was accepted (the client
/// is then dropped).
async fn upgrade_from(
    from: [u8; 4],
    gateway: &TestGateway,
    service: &str,
) -> Option<(u16, serde_json::Value)> {
    let stream = connect_from(from, gateway.addr).await;
    upgrade_refusal_over(stream, &gateway.ws_url(&format!("/ws/{service}"))).await
}

/// Whether the server closed `socket` (a read sees the end) within `wait`.
async fn closed_within(socket: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(wait, socket.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn idle_sockets_and_half_sent_requests_neither_starve_others_nor_stay() {
    let gateway =
        TestGateway::start_with(&[ServiceSpec::new("victim").handler("echo")], |config| {
            config.front_door.header_timeout = Duration::from_secs(1);
            config.front_door.max_connections_per_ip = 1000;
        })
        .await;
    let mut victim = gateway.connect("victim").await;
    // 3,000 sockets that never say anything, from three other addresses,
    // and 50 that stop halfway through a request line.
    let mut idle = Vec::new();
    for n in 0..3000u32 {
        idle.push(connect_from([127, 0, 1, 2 + (n % 3) as u8], gateway.addr).await);
    }
    let mut half = Vec::new();
    for _ in 0..50 {
        let mut socket = connect_from([127, 0, 2, 2], gateway.addr).await;
        socket
            .write_all(b"GET /ws/victim HTTP/1.1\r\nHost: ga")
            .await
            .unwrap();
        half.push(socket);
    }
    // Meanwhile the victim echoes, a newcomer gets in, and the control
    // listener answers.
    assert_eq!(ask(&mut victim, "still here").await, "still here");
    let mut newcomer = gateway.connect("victim").await;
    assert_eq!(ask(&mut newcomer, "me too").await, "me too");
    let (status, listing) = get_json(&gateway.control_url("/push/victim")).await;
    assert_eq!(status, 200);
    assert_eq!(listing["connections"].as_array().unwrap().len(), 2);
    // The header timeout closes every one of them.
    for socket in half.iter_mut().chain(idle.iter_mut().step_by(100)) {
        assert!(
            closed_within(socket, Duration::from_secs(5)).await,
            "a socket that sent no full request head was kept"
        );
    }
    assert_eq!(ask(&mut victim, "after").await, "after");
}

#[tokio::test]
async fn one_address_may_hold_only_so_many_connections() {
    let gateway = TestGateway::start_with(
        &[ServiceSpec::new("per-address").handler("echo")],
        |config| {
            config.front_door.max_connections_per_ip = 5;
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..5 {
        let stream = connect_from([127, 0, 3, 2], gateway.addr).await;
        let (client, _) =
            tokio_tungstenite::client_async(gateway.ws_url("/ws/per-address"), stream)
                .await
                .unwrap();
        held.push(client);
    }
    let (status, body) = upgrade_from([127, 0, 3, 2], &gateway, "per-address")
        .await
        .expect("the sixth from one address is refused");
    assert_eq!(
        (status, body["errNo"].as_i64()),
        (503, Some(2308)),
        "{body}"
    );
    // Another address is not affected.
    assert!(upgrade_from([127, 0, 3, 3], &gateway, "per-address")
        .await
        .is_none());
    // A freed place is free again.
    held.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(upgrade_from([127, 0, 3, 2], &gateway, "per-address")
        .await
        .is_none());
}

#[tokio::test]
async fn a_full_public_listener_refuses_at_accept_and_the_control_listener_still_answers() {
    let gateway =
        TestGateway::start_with(&[ServiceSpec::new("crowded").handler("echo")], |config| {
            config.front_door.max_connections = Some(4);
        })
        .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(gateway.connect("crowded").await);
    }
    let (status, body) = upgrade_from([127, 0, 0, 1], &gateway, "crowded")
        .await
        .expect("a fifth socket is refused");
    assert_eq!(
        (status, body["errNo"].as_i64()),
        (503, Some(2307)),
        "{body}"
    );
    let (status, listing) = get_json(&gateway.control_url("/push/crowded")).await;
    assert_eq!(status, 200);
    assert_eq!(listing["connections"].as_array().unwrap().len(), 4);
    assert_eq!(ask(&mut held[0], "inside").await, "inside");
}

#[tokio::test]
async fn a_register_slower_than_the_handshake_deadline_is_cut_off() {
    let gateway = TestGateway::start_with(
        &[ServiceSpec::new("slow-handshake").handler("probe")],
        |config| {
            config.front_door.handshake_timeout = Duration::from_millis(500);
        },
    )
    .await;
    let (status, body) = upgrade_refusal(&gateway.ws_url("/ws/slow-handshake?slow=3000"))
        .await
        .expect("refused at the deadline");
    assert_eq!(
        (status, body["errNo"].as_i64()),
        (503, Some(2309)),
        "{body}"
    );
    // No connection was left behind, and none reached cleanup.
    let (_, listing) = get_json(&gateway.control_url("/push/slow-handshake")).await;
    assert!(listing["connections"].as_array().unwrap().is_empty());
    assert!(log_lines(&["service=slow-handshake", "cleanup reason="]).is_empty());
    // A register within the deadline is fine.
    let mut client = gateway.connect("slow-handshake?slow=100").await;
    assert_eq!(ask(&mut client, "echo:made it").await, "made it");
}

#[tokio::test]
async fn a_connection_that_only_pings_is_closed_as_idle() {
    let gateway = TestGateway::start(&[ServiceSpec::new("pinger")
        .handler("probe")
        .toml("idle_timeout_s = 1\nping_interval_s = 0")])
    .await;
    let mut client = gateway.connect("pinger").await;
    let pinging = async {
        loop {
            if client.send(Message::Ping(vec![1].into())).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // Pings every 100 ms do not keep it open past its 1 s idle timeout.
    let _ = tokio::time::timeout(Duration::from_secs(2), pinging).await;
    assert_eq!(close_code(&mut client).await, Some(1000));
    let cleanups = wait_for_log(&["service=pinger", "cleanup reason=idle", "stream=log"], 1).await;
    assert_eq!(cleanups.len(), 1, "{cleanups:#?}");
}

#[tokio::test]
async fn a_client_that_answers_no_ping_is_taken_for_gone_and_one_that_answers_stays() {
    let gateway = TestGateway::start(&[ServiceSpec::new("liveness")
        .handler("probe")
        .toml("idle_timeout_s = 60\nping_interval_s = 1")])
    .await;
    // This client reads (so it answers pings) but never sends data.
    let mut answering = gateway.connect("liveness").await;
    let id = connection_id(&mut answering).await;
    // This one never reads: it answers nothing.
    let mut silent = gateway.connect("liveness").await;
    let reading = async {
        loop {
            match answering.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => return other,
            }
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_millis(3500), reading)
            .await
            .is_err(),
        "the answering client got something besides pings"
    );
    // The silent one was closed with 1001 after two quiet intervals.
    assert_eq!(close_code(&mut silent).await, Some(1001));
    wait_for_log(
        &["service=liveness", "cleanup reason=client", "stream=log"],
        1,
    )
    .await;
    // The answering one is still there.
    let (status, _) = get_json(&gateway.control_url(&format!(
        "/push/liveness/{}",
        id.replace('/', "%2F").replace('+', "%2B")
    )))
    .await;
    assert_eq!(status, 200);
    assert_eq!(ask(&mut answering, "echo:alive").await, "alive");
}

#[tokio::test]
async fn a_push_a_web_page_could_send_is_refused() {
    let gateway = TestGateway::start(&[ServiceSpec::new("no-csrf").handler("probe")]).await;
    let mut client = gateway.connect("no-csrf").await;
    let id = connection_id(&mut client).await;
    let url = gateway.control_url("/push/no-csrf");
    // A simple cross-origin POST: text/plain, no preflight.
    let plain = http()
        .post(&url)
        .header("content-type", "text/plain")
        .body(text_push(&id, "csrf"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status().as_u16(), 415);
    let body: serde_json::Value = plain.json().await.unwrap();
    assert_eq!(body["errNo"], 2104);
    // JSON, but from a page: it carries an Origin.
    let from_page = http()
        .post(&url)
        .header("content-type", "application/json")
        .header("origin", "http://evil.example")
        .body(close_push(&id))
        .send()
        .await
        .unwrap();
    assert_eq!(from_page.status().as_u16(), 403);
    let body: serde_json::Value = from_page.json().await.unwrap();
    assert_eq!(body["errNo"], 2105);
    // Neither reached the client.
    assert_eq!(ask(&mut client, "echo:untouched").await, "untouched");
}

#[tokio::test]
async fn each_listener_serves_only_its_own_routes() {
    let gateway = TestGateway::start(&[ServiceSpec::new("two-doors").handler("probe")]).await;
    for path in ["/push/two-doors", "/admin/services"] {
        let (status, body) = get_json(&gateway.url(path)).await;
        assert_eq!(
            (status, body["errNo"].as_i64()),
            (404, Some(2204)),
            "{path}"
        );
    }
    let response = http()
        .post(gateway.url("/push/two-doors"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let refusal = upgrade_refusal(&format!("ws://{}/ws/two-doors", gateway.control_addr)).await;
    assert_eq!(refusal.map(|(status, _)| status), Some(404));
    // Public health names nothing; the control listener's names services.
    let (_, public) = get_json(&gateway.url("/healthz")).await;
    assert_eq!(public, serde_json::json!({"status": "ok"}));
    let (_, control) = get_json(&gateway.control_url("/healthz")).await;
    assert_eq!(control["services"], serde_json::json!(["two-doors"]));
}

#[tokio::test]
async fn an_oversized_upgrade_head_is_refused_before_register() {
    let gateway = TestGateway::start(&[ServiceSpec::new("big-head").handler("probe")]).await;
    let mut request = format!(
        "GET /ws/big-head?q={} HTTP/1.1\r\nHost: gateway\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        "q".repeat(60_000)
    );
    for n in 0..80 {
        request.push_str(&format!("x-padding-{n}: {}\r\n", "p".repeat(4000)));
    }
    request.push_str("\r\n");
    let mut socket = TcpStream::connect(gateway.addr).await.unwrap();
    // The gateway may answer and close before the whole head is written.
    let _ = socket.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(log_lines(&["service=big-head", "role=register"]).is_empty());
}
