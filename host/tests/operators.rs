//! What an operator reads from the gateway binary: its JSON log, and its
//! metrics as `promtool` and a real Prometheus server see them.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{scratch, GatewayProcess};

/// The echo handler of `plugins/echo-wat`, which also logs, at info, a
/// line with a quote, a tab and a newline in it for every message.
const LOUD_ECHO: &str = r#"(module
  (import "wasmgate:gateway/host@0.1.0" "route" (func $route (param i32 i32 i32)))
  (import "wasmgate:gateway/host@0.1.0" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 16) "{\"errNo\":0,\"errMsg\":\"ok\"}")
  (data (i32.const 48) "{}")
  (data (i32.const 256) "loud \"echo\"\tsaw\na message")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $ptr) (local.get 3)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.const 16)))))
    (local.get $ptr))
  (func (export "handle")
        (param i32 i32) (param $role i32) (param i32 i32) (param i32 i32) (param i64)
        (param $event_ptr i32) (param $event_len i32) (result i32)
    (i32.store8 (i32.const 64) (i32.const 0))
    (if (i32.eqz (local.get $role))
      (then
        (i32.store offset=4 (i32.const 64) (i32.const 16))
        (i32.store offset=8 (i32.const 64) (i32.const 25))
        (return (i32.const 64))))
    (if (i32.eq (local.get $role) (i32.const 1))
      (then
        (call $log (i32.const 2) (i32.const 256) (i32.const 25))
        (call $route (local.get $event_ptr) (local.get $event_len) (i32.const 128))))
    (i32.store offset=4 (i32.const 64) (i32.const 48))
    (i32.store offset=8 (i32.const 64) (i32.const 2))
    (i32.const 64))
  (func (export "cabi_post_handle") (param i32)))"#;

/// A plugins folder with the service `loud`.
fn loud_plugins(root: &std::path::Path) -> std::path::PathBuf {
    let plugins = root.join("plugins");
    let dir = plugins.join("loud");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("handler.wasm"), wat::parse_str(LOUD_ECHO).unwrap()).unwrap();
    plugins
}

/// Sends `text` to `service` over a WebSocket and waits for its echo.
fn echo_once(gateway: &GatewayProcess, service: &str, text: &str) {
    let url = format!("ws://{}/ws/{service}", gateway.public);
    let (mut socket, _) = tungstenite::connect(url).expect("upgrade");
    socket
        .send(tungstenite::Message::text(text.to_owned()))
        .unwrap();
    let echoed = socket.read().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), text);
    socket
        .close(Some(tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "".into(),
        }))
        .unwrap();
    // Read until the close handshake is over.
    while socket.read().is_ok() {}
}

/// A plain HTTP/1.1 GET; the status and body.
fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Waits, polling, until `check` returns something (at most `within`).
fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn with_log_format_json_every_line_is_one_object_and_a_handlers_line_names_its_call() {
    let root = scratch("json-log");
    let plugins = loud_plugins(&root);
    let gateway = GatewayProcess::start(
        &plugins,
        &root.join("cache"),
        &["--log-format", "json"],
        &[],
    );
    echo_once(&gateway, "loud", "hello");
    gateway.wait_for_log("connection closed", Duration::from_secs(30));
    let lines = gateway.all_log_lines();
    drop(gateway);
    std::fs::remove_dir_all(&root).unwrap();

    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let handler = records
        .iter()
        .find(|record| record["target"] == "wasmgate::handler")
        .expect("a line of the handler's output");
    assert_eq!(handler["level"], "INFO");
    assert_eq!(handler["service"], "loud");
    assert_eq!(handler["role"], "transfer");
    assert_eq!(handler["stream"], "log");
    // The guest's tab and newline are escaped, the quote is JSON's to escape.
    assert_eq!(handler["message"], r#"loud "echo"\tsaw\na message"#);
    let request_id = handler["request_id"].as_str().unwrap();
    let conn = handler["conn"].as_str().unwrap();
    assert_eq!(request_id.len(), 36, "a UUID: {request_id}");
    // The same connection id as its open and close lines.
    for message in ["connection opened", "connection closed"] {
        let record = records
            .iter()
            .find(|record| record["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line"));
        assert_eq!(record["conn"], conn, "{message}");
        assert_eq!(record["service"], "loud", "{message}");
    }
    // The close line is that of the cleanup call, with its own request id.
    let closed = records
        .iter()
        .find(|record| record["message"] == "connection closed")
        .unwrap();
    assert_eq!(closed["role"], "cleanup");
    assert_eq!(closed["request_id"].as_str().map(str::len), Some(36));
}

/// `promtool check metrics` on `text`: its complaints, empty when none.
fn promtool_complaints(text: &str) -> String {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        complaints
    } else {
        format!("exit {}: {complaints}", output.status)
    }
}

#[test]
fn promtool_finds_nothing_to_complain_about_in_the_metrics() {
    let root = scratch("promtool");
    let plugins = loud_plugins(&root);
    let gateway = GatewayProcess::start(&plugins, &root.join("cache"), &[], &[]);
    echo_once(&gateway, "loud", "counted");
    gateway.wait_for_log("connection closed", Duration::from_secs(30));
    let (status, text) = http_get(gateway.control, "/metrics");
    // A refused upgrade, so a refusal series exists too.
    let (refused, _) = http_get(gateway.public, "/ws/nobody");
    drop(gateway);
    std::fs::remove_dir_all(&root).unwrap();

    assert_eq!(status, 200);
    assert_ne!(refused, 101);
    for series in [
        r#"wasmgate_events_total{service="loud",role="transfer",outcome="ok"} 1"#,
        r#"wasmgate_connects_total{service="loud",result="accepted",reason="none"} 1"#,
        r#"wasmgate_closes_total{code="1000",reason="client"} 1"#,
        r#"wasmgate_connections_open{service="loud"} 0"#,
        r#"wasmgate_pushes_total{source="host_call",result="ok"} 1"#,
        r#"wasmgate_handler_duration_seconds_count{service="loud",role="transfer"} 1"#,
        "wasmgate_call_slots 256",
        "wasmgate_call_slots_in_use 0",
        "wasmgate_build_info{version=",
    ] {
        assert!(text.contains(series), "no {series} in:\n{text}");
    }
    assert_eq!(promtool_complaints(&text), "");
    // The check itself finds a bad name.
    assert_ne!(
        promtool_complaints("# TYPE bad_requests counter\nbad_requests 1\n"),
        ""
    );
}

/// A free TCP port on loopback (free when this returns).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first value of a Prometheus instant query, if any.
fn query(prometheus: SocketAddr, expression: &str) -> Option<f64> {
    let encoded: String = form_urlencoded::byte_serialize(expression.as_bytes()).collect();
    // Refused until the server listens.
    TcpStream::connect(prometheus).ok()?;
    let (status, body) = http_get(prometheus, &format!("/api/v1/query?query={encoded}"));
    if status != 200 {
        return None;
    }
    let answer: serde_json::Value = serde_json::from_str(&body).ok()?;
    answer["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()
}

/// A `prometheus` server process, killed on drop.
struct PrometheusServer(std::process::Child);

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_prometheus_server_scrapes_the_gateway_and_sees_its_events() {
    let root = scratch("prometheus");
    let plugins = loud_plugins(&root);
    let gateway = GatewayProcess::start(&plugins, &root.join("cache"), &[], &[]);
    echo_once(&gateway, "loud", "scraped");

    let config = root.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: wasmgate\n    static_configs:\n      - targets: ['{}']\n",
            gateway.control
        ),
    )
    .unwrap();
    let port = free_port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let server = PrometheusServer(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                root.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus; scripts/setup.sh installs it)"),
    );

    let up = eventually(Duration::from_secs(60), "up == 1", || {
        query(listen, r#"up{job="wasmgate"}"#).filter(|up| *up == 1.0)
    });
    let events = eventually(Duration::from_secs(60), "an event counted", || {
        query(
            listen,
            r#"sum(wasmgate_events_total{job="wasmgate",service="loud",role="transfer",outcome="ok"})"#,
        )
        .filter(|events| *events > 0.0)
    });
    drop(server);
    drop(gateway);
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(up, 1.0);
    assert_eq!(events, 1.0);
}

/// `wasmgate_instantiate_duration_seconds_count` from `/metrics`.
fn instantiations(gateway: &GatewayProcess) -> u64 {
    let (status, body) = http_get(gateway.control, "/metrics");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|line| line.strip_prefix("wasmgate_instantiate_duration_seconds_count "))
        .expect("the instantiation histogram")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn no_instance_is_prepared_while_the_idle_budget_is_spent() {
    let root = scratch("idle-budget");
    let plugins = common::echo_plugins(&root, "prep", 2);
    // Four call slots: an idle budget of one instance.
    let gateway = GatewayProcess::start(
        &plugins,
        &root.join("cache"),
        &["--max-concurrency", "4"],
        &[],
    );
    // prep-0's events leave its next instance prepared: the budget's one.
    echo_once(&gateway, "prep-0", "first");
    std::thread::sleep(Duration::from_millis(300));
    let before = instantiations(&gateway);
    // prep-1 finds the budget spent: each of its events instantiates once,
    // and none makes an instance only to drop it.
    let url = format!("ws://{}/ws/prep-1", gateway.public);
    let (mut socket, _) = tungstenite::connect(url).expect("upgrade");
    for n in 0..20 {
        let text = format!("message {n}");
        socket
            .send(tungstenite::Message::text(text.clone()))
            .unwrap();
        assert_eq!(socket.read().unwrap().into_text().unwrap().as_str(), text);
    }
    std::thread::sleep(Duration::from_millis(300));
    // Register and 20 transfers.
    assert_eq!(instantiations(&gateway) - before, 21);
    drop(socket);
}
