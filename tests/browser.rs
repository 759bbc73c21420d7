use std::path::PathBuf;
use std::process::Stdio;

use wasmgate_tests::*;

/// The playwright-core module installed by `scripts/toolchains/browser.sh`.
fn playwright() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let module = root.join("target/toolchains/browser/node_modules/playwright-core");
    assert!(
        module.join("package.json").is_file() && std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Chromium and playwright-core: run scripts/setup.sh \
         (it installs them with scripts/toolchains/browser.sh)"
    );
    module
}

/// Runs `browser/chat.cjs` against the demo pages at `bases` (one page on
/// each, or both on the one).
async fn browsers_chat(bases: &[String]) {
    let module = playwright();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/chat.cjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .args(bases)
        .env("WASMGATE_PLAYWRIGHT", &module)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("browser chat: OK"),
        "browser test failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

#[tokio::test]
async fn two_browser_pages_chat_through_the_demo_page() {
    playwright();
    let gateway = TestGateway::start(&[ServiceSpec::new("chat").handler("chat")]).await;
    browsers_chat(&[gateway.url("")]).await;
}

/// Two gateways of one cluster (a real `redis-server`), a browser page on
/// each: they chat in one room, the room being a group across both nodes.
#[tokio::test]
async fn two_browser_pages_on_two_cluster_nodes_chat_in_one_room() {
    playwright();
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path());
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let node = TestGateway::start_with(&[ServiceSpec::new("chat").handler("chat")], |config| {
            config.cluster = Some(redis.url());
            config.kv = wasmgate::KvConfig::Redis { url: redis.url() };
        })
        .await;
        node.wait_until_clustered().await;
        nodes.push(node);
    }
    browsers_chat(&[nodes[0].url(""), nodes[1].url("")]).await;
}

#[tokio::test]
async fn the_demo_page_is_served() {
    let gateway = TestGateway::start(&[]).await;
    let response = http().get(gateway.url("/demo/chat")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(response.text().await.unwrap().contains("/ws/chat?room="));
}
