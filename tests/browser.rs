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

#[tokio::test]
async fn two_browser_pages_chat_through_the_demo_page() {
    let module = playwright();
    let gateway = TestGateway::start(&[ServiceSpec::new("chat").handler("chat")]).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/chat.cjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(gateway.url(""))
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
