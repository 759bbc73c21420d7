//! A tenant's own folder used against the gateway: plugin files that are
//! links to devices or to another team's settings, FIFOs, folders that are
//! links, and files beyond the size cap. Each time the attacker's service
//! fails alone, and a bystander keeps serving.

use std::time::Duration;

use wasmgate_tests::*;

fn bystander(name: &str) -> ServiceSpec {
    ServiceSpec::new(name).handler("echo")
}

async fn bystander_echoes(gateway: &TestGateway, name: &str) {
    let mut client = gateway.connect(name).await;
    assert_eq!(ask(&mut client, "still serving").await, "still serving");
}

async fn admin_errors(gateway: &TestGateway, service: &str) -> serde_json::Value {
    let (_, body) = get_json(&gateway.control_url("/admin/services")).await;
    body["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == service)
        .map(|s| s["errors"].clone())
        .unwrap_or(serde_json::Value::Null)
}

#[tokio::test]
async fn a_handler_linked_to_dev_zero_is_refused_not_read() {
    let gateway = TestGateway::start(&[
        ServiceSpec::new("zero-link").link("handler.wasm", "/dev/zero"),
        bystander("zero-bystander"),
    ])
    .await;
    wait_for_log(
        &["handler not loaded", "service=zero-link", "symbolic link"],
        1,
    )
    .await;
    let (status, body) = upgrade_refusal(&gateway.ws_url("/ws/zero-link"))
        .await
        .expect("fails closed");
    assert_eq!(
        (status, body["errNo"].as_i64()),
        (503, Some(2306)),
        "{body}"
    );
    let errors = admin_errors(&gateway, "zero-link").await;
    assert!(
        errors["handler.wasm"]["error"]
            .as_str()
            .unwrap()
            .contains("symbolic link"),
        "{errors}"
    );
    bystander_echoes(&gateway, "zero-bystander").await;
}

#[tokio::test]
async fn fifos_as_plugin_files_block_nothing_and_fail_closed() {
    // Present at start-up: the gateway must come up all the same.
    let gateway = TestGateway::start(&[
        ServiceSpec::new("fifo-handler").fifo("handler.wasm"),
        ServiceSpec::new("fifo-register").fifo("register.wasm"),
        bystander("fifo-bystander"),
    ])
    .await;
    for service in ["fifo-handler", "fifo-register"] {
        let (status, body) = upgrade_refusal(&gateway.ws_url(&format!("/ws/{service}")))
            .await
            .unwrap_or_else(|| panic!("{service} accepted a client without its handler"));
        assert_eq!(
            (status, body["errNo"].as_i64()),
            (503, Some(2306)),
            "{service}: {body}"
        );
        assert!(
            admin_errors(&gateway, service)
                .await
                .to_string()
                .contains("FIFO"),
            "{service}"
        );
    }
    bystander_echoes(&gateway, "fifo-bystander").await;
    // The folder is not stuck: a real file in place of the FIFO loads.
    let dir = gateway.plugins.path().join("fifo-handler");
    install(&dir, "handler.wasm", &std::fs::read(wasm("echo")).unwrap());
    wait_for_log(&["handler loaded", "service=fifo-handler"], 1).await;
    bystander_echoes(&gateway, "fifo-handler").await;
}

#[tokio::test]
async fn a_settings_file_linked_to_another_services_is_refused() {
    let gateway = TestGateway::start(&[
        ServiceSpec::new("vault")
            .handler("probe")
            .toml("env = { SECRET = \"the vault's secret\" }"),
        ServiceSpec::new("thief")
            .handler("probe")
            .link("service.toml", "../vault/service.toml"),
    ])
    .await;
    // The thief's settings are refused, so the thief is not loaded at all.
    wait_for_log(&["service=thief", "bad service.toml", "symbolic link"], 1).await;
    let refusal = upgrade_refusal(&gateway.ws_url("/ws/thief")).await;
    assert_eq!(refusal.map(|(status, _)| status), Some(404));
    // The vault keeps its secret to itself.
    let mut vault = gateway.connect("vault").await;
    let env: serde_json::Value = serde_json::from_str(&ask(&mut vault, "env").await).unwrap();
    assert_eq!(env["SECRET"], "the vault's secret");
}

#[tokio::test]
async fn a_service_folder_that_is_a_link_is_not_a_service() {
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::copy(wasm("echo"), elsewhere.path().join("handler.wasm")).unwrap();
    let gateway = TestGateway::start(&[bystander("link-bystander")]).await;
    std::os::unix::fs::symlink(elsewhere.path(), gateway.plugins.path().join("linked")).unwrap();
    // Give the watcher time to see it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refusal = upgrade_refusal(&gateway.ws_url("/ws/linked")).await;
    assert_eq!(refusal.map(|(status, _)| status), Some(404));
    bystander_echoes(&gateway, "link-bystander").await;
}

#[tokio::test]
async fn a_handler_file_over_the_size_cap_is_refused_unread() {
    let gateway = TestGateway::start_with(&[bystander("cap-bystander")], |config| {
        config.max_plugin_file_bytes = 1 << 20;
    })
    .await;
    let dir = gateway.plugins.path().join("oversized");
    std::fs::create_dir(&dir).unwrap();
    // A sparse file: 2 GiB on paper, nothing on disk.
    let file = std::fs::File::create(dir.join("handler.wasm")).unwrap();
    file.set_len(2 << 30).unwrap();
    drop(file);
    wait_for_log(&["service=oversized", "more than the limit"], 1).await;
    let (status, body) = upgrade_refusal(&gateway.ws_url("/ws/oversized"))
        .await
        .expect("fails closed");
    assert_eq!(
        (status, body["errNo"].as_i64()),
        (503, Some(2306)),
        "{body}"
    );
    bystander_echoes(&gateway, "cap-bystander").await;
}

#[tokio::test]
async fn a_core_module_with_malformed_component_metadata_is_refused_with_a_reason() {
    // A core module whose own `component-type` custom section lies about
    // its lengths (found by fuzzing `wrap`; the corpus keeps the input,
    // whose first byte picks raw mode): wit-component panics decoding it.
    let input =
        include_bytes!("../fuzz/corpus/core_module/crash-3cc1ae92821f8e0130d64e7c7cdd5b4e29494c63");
    let gateway = TestGateway::start(&[
        ServiceSpec::new("bad-metadata").bytes("handler.wasm", input[1..].to_vec()),
        bystander("metadata-bystander"),
    ])
    .await;
    let lines = wait_for_log(&["service=bad-metadata", "handler rejected"], 1).await;
    assert!(
        lines[0].contains("component metadata") && !lines[0].contains("panicked"),
        "{}",
        lines[0]
    );
    let (status, body) = upgrade_refusal(&gateway.ws_url("/ws/bad-metadata"))
        .await
        .expect("fails closed");
    assert_eq!(status, 503, "{body}");
    bystander_echoes(&gateway, "metadata-bystander").await;
}
