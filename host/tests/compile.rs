//! Compiling hostile handler files: the `wasmgate serve` binary compiles
//! each in a child process with a deadline and an address-space limit. A
//! file that exceeds either fails its own load; the gateway, which listens
//! from the start, goes on serving every other service.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{scratch, GatewayProcess};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const ECHO_WAT: &str = include_str!("../../plugins/echo-wat/handler.wat");

/// The echo handler plus one exported function of `instructions` blocks of
/// arithmetic: valid, wrappable, and slow and memory-hungry to compile.
fn compile_bomb(instructions: usize) -> Vec<u8> {
    let body = "local.get 0 i32.const 7 i32.mul local.set 0\n".repeat(instructions);
    let end = ECHO_WAT.rfind(')').unwrap();
    let wat = format!(
        "{}(func (export \"heavy\") (param i32) (result i32)\n{body} local.get 0))",
        &ECHO_WAT[..end]
    );
    wat::parse_str(wat).unwrap()
}

fn service(plugins: &Path, name: &str, wasm: &[u8]) {
    let dir = plugins.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("handler.wasm"), wasm).unwrap();
}

/// The status line of an HTTP GET on `addr`, and its body.
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The status line of a WebSocket upgrade of `service`.
async fn upgrade_status(addr: SocketAddr, service: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /ws/{service} HTTP/1.1\r\nHost: gateway\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut status = String::new();
    BufReader::new(stream).read_line(&mut status).await.unwrap();
    status
}

/// Compiling children of the gateway still running.
fn compilers_of(gateway: &GatewayProcess) -> usize {
    let children = std::fs::read_to_string(format!(
        "/proc/{pid}/task/{pid}/children",
        pid = gateway.pid()
    ))
    .unwrap_or_default();
    children.split_whitespace().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_compiles_past_its_deadline_fails_alone_while_the_gateway_serves() {
    let root = scratch("compile-deadline");
    let plugins = root.join("plugins");
    service(
        &plugins,
        "victim-deadline",
        &wat::parse_str(ECHO_WAT).unwrap(),
    );
    service(&plugins, "bomb-deadline", &compile_bomb(400_000));
    let gateway = GatewayProcess::start_listening(
        &plugins,
        &root.join("cache"),
        &["--compile-timeout-s", "1", "--compile-progress-ms", "200"],
        &[],
    );
    // It listens before anything has compiled: the public health answers,
    // and the bomb's service exists and refuses clients while compiling.
    let (status, _) = get(gateway.public, "/healthz").await;
    assert!(status.contains(" 200 "), "{status}");
    let refused = upgrade_status(gateway.public, "bomb-deadline").await;
    assert!(
        refused.contains(" 503 "),
        "a compiling service refuses: {refused}"
    );

    gateway.wait_for_log(
        "found at start-up has loaded or failed",
        Duration::from_secs(60),
    );
    let failure = gateway.wait_for_log(
        "service=bomb-deadline file=handler.wasm hash=",
        Duration::from_secs(1),
    );
    assert!(failure.contains("not done within 1s"), "{failure}");
    // While it compiled, it said so: which service and file, how big, how
    // long so far.
    let bytes = compile_bomb(400_000).len();
    let progress = gateway.log_lines(&format!(
        "still compiling service=bomb-deadline file=handler.wasm bytes={bytes} elapsed="
    ));
    assert!(!progress.is_empty(), "no progress line");
    assert!(
        gateway
            .log_lines("handler loaded service=victim-deadline")
            .len()
            == 1
    );
    // The child was killed at the deadline, not left compiling.
    assert_eq!(compilers_of(&gateway), 0);
    assert!(upgrade_status(gateway.public, "victim-deadline")
        .await
        .contains(" 101 "));
    assert!(upgrade_status(gateway.public, "bomb-deadline")
        .await
        .contains(" 503 "));
    let (_, services) = get(gateway.control, "/admin/services").await;
    assert!(services.contains("not done within 1s"), "{services}");
    std::fs::remove_dir_all(root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_needs_more_memory_to_compile_than_allowed_fails_alone() {
    let root = scratch("compile-memory");
    let plugins = root.join("plugins");
    service(
        &plugins,
        "victim-memory",
        &wat::parse_str(ECHO_WAT).unwrap(),
    );
    service(&plugins, "bomb-memory", &compile_bomb(400_000));
    let gateway = GatewayProcess::start(
        &plugins,
        &root.join("cache"),
        &["--compile-memory-mb", "256", "--compile-timeout-s", "300"],
        &[],
    );
    let failure = gateway.wait_for_log(
        "service=bomb-memory file=handler.wasm hash=",
        Duration::from_secs(1),
    );
    assert!(failure.contains("its memory limit"), "{failure}");
    assert!(
        gateway
            .log_lines("handler loaded service=victim-memory")
            .len()
            == 1
    );
    assert!(upgrade_status(gateway.public, "victim-memory")
        .await
        .contains(" 101 "));
    assert!(upgrade_status(gateway.public, "bomb-memory")
        .await
        .contains(" 503 "));
    std::fs::remove_dir_all(root).unwrap();
}
