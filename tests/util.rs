//! Test utilities: start a real gateway on `127.0.0.1:0` with services made of
//! real wasm handlers, talk to it with real WebSocket and HTTP clients, and
//! read what the gateway logged.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Tests that measure the process's resident memory hold this exclusively;
/// tests with large handlers (Python, JavaScript: tens of MiB per compile and
/// instance) hold it shared, so they never run during a measurement.
static MEMORY_MEASUREMENT: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Held by a test that measures resident memory: no large handler runs meanwhile.
pub async fn measuring_memory() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    MEMORY_MEASUREMENT.write().await
}

/// Held by a test that loads large handlers: no memory measurement runs meanwhile.
pub async fn using_large_handlers() -> tokio::sync::RwLockReadGuard<'static, ()> {
    MEMORY_MEASUREMENT.read().await
}

/// A WebSocket client connection.
pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Path of a handler built by this crate's build script, by crate name.
pub fn wasm(crate_name: &str) -> PathBuf {
    let path = PathBuf::from(env!("WASMGATE_TEST_WASM_DIR"))
        .join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// The compile cache shared by every test gateway of this build.
pub fn compile_cache_dir() -> PathBuf {
    PathBuf::from(env!("WASMGATE_TEST_WASM_DIR")).join("compile-cache")
}

/// Writes `bytes` as `dir/file` the way copy tools and editors do: into a
/// temporary name, then renamed into place.
pub fn install(dir: &std::path::Path, file: &str, bytes: &[u8]) {
    let temporary = dir.join(format!(".{file}.partial"));
    std::fs::write(&temporary, bytes).unwrap();
    std::fs::rename(&temporary, dir.join(file)).unwrap();
}

/// A service folder to create for a test gateway.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    name: String,
    files: Vec<(String, PathBuf)>,
    inline: Vec<(String, Vec<u8>)>,
    links: Vec<(String, PathBuf)>,
    fifos: Vec<String>,
    toml: Option<String>,
}

impl ServiceSpec {
    /// A service named `name` with no files yet.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            files: Vec::new(),
            inline: Vec::new(),
            links: Vec::new(),
            fifos: Vec::new(),
            toml: None,
        }
    }

    /// Copies the built handler `crate_name` in as `file` (e.g. `handler.wasm`).
    pub fn file(mut self, file: &str, crate_name: &str) -> Self {
        self.files.push((file.into(), wasm(crate_name)));
        self
    }

    /// Writes `bytes` (e.g. a module built from WAT in the test) as `file`.
    pub fn bytes(mut self, file: &str, bytes: Vec<u8>) -> Self {
        self.inline.push((file.into(), bytes));
        self
    }

    /// Makes `file` a symbolic link to `target` (relative targets are
    /// relative to the service folder).
    pub fn link(mut self, file: &str, target: impl Into<PathBuf>) -> Self {
        self.links.push((file.into(), target.into()));
        self
    }

    /// Makes `file` a FIFO (a named pipe nobody writes to).
    pub fn fifo(mut self, file: &str) -> Self {
        self.fifos.push(file.into());
        self
    }

    /// Uses `crate_name` as the shared `handler.wasm`.
    pub fn handler(self, crate_name: &str) -> Self {
        self.file("handler.wasm", crate_name)
    }

    /// Writes this `service.toml`.
    pub fn toml(mut self, text: &str) -> Self {
        self.toml = Some(text.into());
        self
    }
}

#[path = "../host/tests/common/redis.rs"]
mod redis;
pub use redis::RedisServer;

/// A gateway running in this process.
pub struct TestGateway {
    /// Where its public listener listens.
    pub addr: SocketAddr,
    /// Where its control listener listens.
    pub control_addr: SocketAddr,
    /// Its plugins folder.
    pub plugins: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestGateway {
    /// Creates the service folders and starts a gateway on `127.0.0.1:0`.
    pub async fn start(services: &[ServiceSpec]) -> Self {
        Self::start_with(services, |_| {}).await
    }

    /// Like [`TestGateway::start`], with the gateway's settings changed by
    /// `configure` first.
    pub async fn start_with(
        services: &[ServiceSpec],
        configure: impl FnOnce(&mut wasmgate::GatewayConfig),
    ) -> Self {
        init_logs();
        let plugins = tempfile::tempdir().unwrap();
        for service in services {
            let dir = plugins.path().join(&service.name);
            std::fs::create_dir_all(&dir).unwrap();
            for (file, source) in &service.files {
                std::fs::copy(source, dir.join(file)).unwrap();
            }
            for (file, bytes) in &service.inline {
                std::fs::write(dir.join(file), bytes).unwrap();
            }
            if let Some(toml) = &service.toml {
                std::fs::write(dir.join("service.toml"), toml).unwrap();
            }
            for (file, target) in &service.links {
                std::os::unix::fs::symlink(target, dir.join(file)).unwrap();
            }
            for file in &service.fifos {
                let status = std::process::Command::new("mkfifo")
                    .arg(dir.join(file))
                    .status()
                    .unwrap();
                assert!(status.success(), "mkfifo {file}");
            }
        }
        let mut config = wasmgate::GatewayConfig {
            max_concurrency: 32,
            max_memory_mb: 128,
            cache_dir: Some(compile_cache_dir()),
            ..wasmgate::GatewayConfig::new(plugins.path())
        };
        // Tests share 127.0.0.1 and open thousands of sockets between them.
        config.front_door.max_connections_per_ip = 0;
        configure(&mut config);
        let plain = config.tls.is_none();
        let any = "127.0.0.1:0".parse().unwrap();
        let listeners = wasmgate::Listeners::bind(any, any).await.unwrap();
        let addr = listeners.public.local_addr().unwrap();
        let control_addr = listeners.control.local_addr().unwrap();
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(wasmgate::run(listeners, config, async {
            let _ = signal.await;
        }));
        let gateway = Self {
            addr,
            control_addr,
            plugins,
            shutdown: Some(shutdown),
            task: Some(task),
        };
        // It listens at once and loads its services meanwhile (each refusing
        // clients until loaded); wait until they all have.
        if plain {
            let (status, _) = get_json(&gateway.url("/healthz")).await;
            assert_eq!(status, 200, "gateway did not come up");
        }
        gateway.wait_until_loaded().await;
        gateway
    }

    /// Waits until the handler files found at start-up have loaded or
    /// failed, as the control listener's health reports.
    pub async fn wait_until_loaded(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let (status, body) = get_json(&self.control_url("/healthz")).await;
            assert_eq!(status, 200, "control health");
            if body["loaded"] == true {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "services never loaded"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Cluster mode: waits until the node holds its lease and its inbox is
    /// subscribed, as the control listener's health reports.
    pub async fn wait_until_clustered(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (_, body) = get_json(&self.control_url("/healthz")).await;
            let cluster = &body["cluster"];
            if cluster["lease"] == true && cluster["subscribed"] == true {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never joined the cluster: {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// `ws://` URL of a path.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// `http://` URL of a path on the public listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `http://` URL of a path on the control listener.
    pub fn control_url(&self, path: &str) -> String {
        format!("http://{}{}", self.control_addr, path)
    }

    /// Opens a WebSocket to `/ws/<service>` (plus an optional `?query`).
    pub async fn connect(&self, service_and_query: &str) -> Client {
        let url = self.ws_url(&format!("/ws/{service_and_query}"));
        let (client, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket connect");
        client
    }

    /// Starts graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(signal) = self.shutdown.take() {
            let _ = signal.send(());
        }
    }

    /// Starts graceful shutdown (unless begun already) and waits until `run`
    /// returns.
    pub async fn shutdown(mut self) {
        self.begin_shutdown();
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("gateway shut down in time")
            .unwrap()
            .unwrap();
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Sends a text message.
pub async fn send_text(client: &mut Client, text: &str) {
    client.send(Message::text(text)).await.expect("send text");
}

/// The next data message (text or binary), skipping pings; fails on close or
/// after five seconds.
pub async fn next_message(client: &mut Client) -> Message {
    next_message_within(client, Duration::from_secs(5)).await
}

/// Like [`next_message`], waiting up to `within`: for replies that do
/// heavy work by design, whose time on a busy machine is no measure.
pub async fn next_message_within(client: &mut Client, within: Duration) -> Message {
    loop {
        let message = tokio::time::timeout(within, client.next())
            .await
            .expect("a message in time")
            .expect("connection still open")
            .expect("no protocol error");
        match message {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return other,
        }
    }
}

/// The next text message.
pub async fn next_text(client: &mut Client) -> String {
    match next_message(client).await {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Sends `text` and returns the text reply, waiting up to `within`.
pub async fn ask_within(client: &mut Client, text: &str, within: Duration) -> String {
    send_text(client, text).await;
    match next_message_within(client, within).await {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Sends `text` and returns the text reply.
pub async fn ask(client: &mut Client, text: &str) -> String {
    send_text(client, text).await;
    next_text(client).await
}

/// Checks the `/` commands of an example echo whose language helper reaches
/// the key-value store and groups: a counter shared by two clients, a group
/// joined by both, its member count and a broadcast to it but the sender;
/// then each `(command, reply)` of `more` from the first client; a plain
/// message still echoes.
pub async fn state_commands_work(gateway: &TestGateway, service: &str, more: &[(&str, &str)]) {
    let mut a = gateway.connect(service).await;
    let mut b = gateway.connect(service).await;
    assert_eq!(ask(&mut a, "/count").await, "count 1");
    assert_eq!(ask(&mut b, "/count").await, "count 2");
    assert_eq!(ask(&mut a, "/join room").await, "joined room");
    assert_eq!(ask(&mut b, "/join room").await, "joined room");
    assert_eq!(ask(&mut a, "/members room").await, "2");
    assert_eq!(ask(&mut a, "/say room hello b").await, "delivered 1");
    assert_eq!(next_text(&mut b).await, "hello b");
    for (command, reply) in more {
        assert_eq!(ask(&mut a, command).await, *reply, "{service}: {command}");
    }
    assert_eq!(ask(&mut b, "plain").await, "plain");
}

/// Checks an echo service: text (ASCII, non-ASCII, several KiB) comes back
/// as text and binary as binary.
pub async fn echoes_everything(gateway: &TestGateway, service: &str) {
    let mut client = gateway.connect(service).await;
    for text in [
        "hello".to_owned(),
        "grüße, 世界 🌍".to_owned(),
        "0123456789abcdef".repeat(512),
    ] {
        assert_eq!(ask(&mut client, &text).await, text, "{service}");
    }
    let bytes: Vec<u8> = (0..=255u8).cycle().take(6000).collect();
    client.send(Message::binary(bytes.clone())).await.unwrap();
    assert_eq!(
        next_message(&mut client).await,
        Message::binary(bytes),
        "{service}"
    );
}

/// Asks for a WebSocket upgrade of `url`: `None` when it was accepted,
/// otherwise the refusal's HTTP status and JSON body (`null` if not JSON).
pub async fn upgrade_refusal(url: &str) -> Option<(u16, serde_json::Value)> {
    refusal_of(tokio_tungstenite::connect_async(url).await, url)
}

/// Like [`upgrade_refusal`], over a TCP connection already open (from a
/// chosen source address, say).
pub async fn upgrade_refusal_over(
    stream: TcpStream,
    url: &str,
) -> Option<(u16, serde_json::Value)> {
    refusal_of(tokio_tungstenite::client_async(url, stream).await, url)
}

fn refusal_of<S>(
    result: Result<(S, impl std::fmt::Debug), tokio_tungstenite::tungstenite::Error>,
    url: &str,
) -> Option<(u16, serde_json::Value)> {
    match result {
        Ok(_) => None,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            Some((
                response.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            ))
        }
        Err(other) => panic!("{url}: expected an HTTP answer, got {other:?}"),
    }
}

/// The connection's own id, asked of the probe handler.
pub async fn connection_id(client: &mut Client) -> String {
    let info: serde_json::Value = serde_json::from_str(&ask(client, "info").await).unwrap();
    info["connectionId"].as_str().unwrap().to_owned()
}

/// Waits for the close frame and returns its code (skipping data messages).
pub async fn close_code(client: &mut Client) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("close within 10 s")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// A plain HTTP client.
pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// Posts a reverse-push body and returns the status and JSON answer.
pub async fn post_push(
    gateway: &TestGateway,
    service: &str,
    body: impl Into<String>,
) -> (u16, serde_json::Value) {
    let response = http()
        .post(gateway.control_url(&format!("/push/{service}")))
        .header("content-type", "application/json")
        .body(body.into())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

/// GETs a URL and returns the status and JSON answer.
pub async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let response = http().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

/// A reverse-push `data send` body for a text message.
pub fn text_push(id: &str, text: &str) -> String {
    serde_json::json!({"websocket": {"action": "data send", "secConnectionID": id, "dataType": "text", "data": text}}).to_string()
}

/// A reverse-push `closing` body.
pub fn close_push(id: &str) -> String {
    serde_json::json!({"websocket": {"action": "closing", "secConnectionID": id}}).to_string()
}

// ---------------------------------------------------------------------------
// Log capture

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        std::io::stderr().write_all(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOGS: OnceLock<LogBuffer> = OnceLock::new();

fn init_logs() {
    LOGS.get_or_init(|| {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,wasmgate=debug,wasmtime=warn,cranelift=warn")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        buffer
    });
}

/// Log lines that contain every one of `needles`.
pub fn log_lines(needles: &[&str]) -> Vec<String> {
    let buffer = LOGS.get().expect("logs initialised").0.lock().unwrap();
    String::from_utf8_lossy(&buffer)
        .lines()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .map(str::to_owned)
        .collect()
}

/// Waits (up to 60 s: a bound against hanging, not a speed test; a busy
/// machine recompiling a large component can take tens of seconds) until at
/// least `count` log lines contain all `needles`, then a little longer so
/// that surplus lines would show, and returns them all.
pub async fn wait_for_log(needles: &[&str], count: usize) -> Vec<String> {
    for _ in 0..1200 {
        if log_lines(needles).len() >= count {
            tokio::time::sleep(Duration::from_millis(150)).await;
            return log_lines(needles);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    log_lines(needles)
}
