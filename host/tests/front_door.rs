//! The front door under abuse that needs the gateway in its own process:
//! more sockets than one process may hold on both ends, a small open-file
//! limit, and resident memory read from `/proc`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{echo_plugins, scratch, GatewayProcess};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Completes a WebSocket handshake on a raw socket; `None` if refused.
async fn upgrade(addr: SocketAddr, service: &str) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!(
        "GET /ws/{service} HTTP/1.1\r\nHost: gateway\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).await.ok()?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 || line == "\r\n" {
            break;
        }
    }
    status.contains(" 101 ").then(|| reader.into_inner())
}

/// A masked binary frame header that declares `len` bytes of payload and
/// sends none of it.
fn declared_frame_header(len: u64) -> Vec<u8> {
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    header
}

async fn open_many(addr: SocketAddr, service: &'static str, n: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(n);
    let tasks: Vec<_> = (0..64)
        .map(|worker| {
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for _ in (worker..n).step_by(64) {
                    mine.push(upgrade(addr, service).await.expect("upgrade accepted"));
                }
                mine
            })
        })
        .collect();
    for task in tasks {
        sockets.extend(task.await.unwrap());
    }
    sockets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_that_declare_their_full_size_and_send_nothing_do_not_pin_memory() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let root = scratch("frames");
    let plugins = echo_plugins(&root, "frames", 1);
    let gateway = GatewayProcess::start(
        &plugins,
        &root.join("cache"),
        &["--max-connections-per-ip", "0"],
        &[],
    );
    const N: usize = 10_000;
    let mut sockets = open_many(gateway.public, "frames-0", N).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let upgraded = gateway.rss_kib();
    // Each declares a frame of the service's whole max_message_bytes
    // (256 KiB by default) and sends no payload.
    let header = declared_frame_header(256 << 10);
    for socket in &mut sockets {
        socket.write_all(&header).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let declared = gateway.rss_kib();
    let per_connection = declared.saturating_sub(upgraded) as f64 / N as f64;
    println!(
        "RSS with {N} upgraded connections: {upgraded} KiB; after each declared a 256 KiB frame: \
         {declared} KiB ({per_connection:.1} KiB more per connection)"
    );
    // 256 KiB each held resident would be 2.5 GB.
    assert!(
        per_connection < 32.0,
        "declared frames pinned {per_connection:.1} KiB per connection"
    );
    // The gateway still answers.
    let mut victim = upgrade(gateway.public, "frames-0")
        .await
        .expect("still accepting");
    victim
        .write_all(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i'])
        .await
        .unwrap();
    let mut echoed = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), victim.read_exact(&mut echoed))
        .await
        .expect("an echo within 5 s")
        .unwrap();
    assert_eq!(&echoed, &[0x81, 2, b'h', b'i']);
    drop(sockets);
    drop(gateway);
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_open_file_limit_the_control_listener_and_reloads_still_work() {
    let root = scratch("fd-reserve");
    let plugins = echo_plugins(&root, "reserve", 2);
    // 600 descriptors in all; 64 kept back, 16 for the control listener.
    let gateway = GatewayProcess::start(
        &plugins,
        &root.join("cache"),
        &[
            "--fd-reserve",
            "64",
            "--max-control-connections",
            "16",
            "--max-connections-per-ip",
            "0",
        ],
        &["prlimit", "--nofile=600:600", "--"],
    );
    // More idle sockets than the public listener may hold.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..700 {
        let mut socket = TcpStream::connect(gateway.public).await.unwrap();
        // A refused socket is answered at once and closed; an admitted one
        // waits for a request.
        let mut first = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(20), socket.read(&mut first)).await {
            Ok(Ok(n)) if n > 0 => {
                let answer = String::from_utf8_lossy(&first[..n]).into_owned();
                assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
                refused += 1;
            }
            _ => held.push(socket),
        }
    }
    assert!(refused > 0, "the cap never refused anyone");
    let at_cap = gateway.open_files();
    assert!(at_cap < 600, "{at_cap} descriptors open");
    // The control listener still answers, from its own share.
    let control = reqwest_free_get(gateway.control, "/push/reserve-0").await;
    assert!(control.starts_with("HTTP/1.1 200"), "{control}");
    // A plugin file can still be read and compiled: replace a handler.
    let echo = std::fs::read(plugins.join("reserve-0/handler.wasm")).unwrap();
    let mut changed = echo.clone();
    // A custom section at the end changes the bytes, not the behaviour.
    changed.extend_from_slice(&[0, 4, 3, b'a', b'b', b'c']);
    let temporary = plugins.join("reserve-1/.handler.wasm.new");
    std::fs::write(&temporary, &changed).unwrap();
    std::fs::rename(&temporary, plugins.join("reserve-1/handler.wasm")).unwrap();
    let mut loaded = false;
    for _ in 0..100 {
        if gateway
            .log_lines("handler loaded")
            .iter()
            .any(|line| line.contains("service=reserve-1") && !line.contains("previous=\"none\""))
        {
            loaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(loaded, "the new handler was not loaded at the cap");
    assert!(
        gateway.log_lines("Too many open files").is_empty(),
        "{:?}",
        gateway.log_lines("Too many open files")
    );
    // Once the idle sockets go (the header timeout would close them; here
    // they are dropped), new clients get in again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(upgrade(gateway.public, "reserve-0").await.is_some());
    drop(gateway);
    std::fs::remove_dir_all(&root).unwrap();
}

/// A plain HTTP/1.1 GET on a fresh socket; the whole answer as text.
async fn reqwest_free_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}
