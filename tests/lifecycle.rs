use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use wasmgate_tests::*;

fn probe() -> ServiceSpec {
    ServiceSpec::new("probe").handler("probe")
}

/// The cleanup lines the probe logged for one connection.
async fn cleanups(id: &str) -> Vec<String> {
    wait_for_log(&["cleanup reason=", id, "role=cleanup", "stream=log"], 1).await
}

#[tokio::test]
async fn messages_of_one_connection_stay_in_order() {
    let gateway = TestGateway::start(&[probe()]).await;
    let mut client = gateway.connect("probe").await;
    for i in 0..300 {
        send_text(&mut client, &format!("echo:{i}")).await;
    }
    for i in 0..300 {
        assert_eq!(next_text(&mut client).await, i.to_string());
    }
}

#[tokio::test]
async fn cleanup_runs_once_when_the_client_closes() {
    let gateway = TestGateway::start(&[probe()]).await;
    let mut client = gateway.connect("probe").await;
    let id = connection_id(&mut client).await;
    client
        .close(Some(CloseFrame {
            code: 4321.into(),
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    let lines = cleanups(&id).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("reason=client code=4321"), "{}", lines[0]);
}

#[tokio::test]
async fn cleanup_runs_once_when_the_client_vanishes() {
    let gateway = TestGateway::start(&[probe()]).await;
    let mut client = gateway.connect("probe").await;
    let id = connection_id(&mut client).await;
    drop(client);
    let lines = cleanups(&id).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("reason=client code=none"), "{}", lines[0]);
}

#[tokio::test]
async fn cleanup_runs_once_when_a_handler_closes_the_connection() {
    let gateway = TestGateway::start(&[probe()]).await;
    let mut client = gateway.connect("probe").await;
    let id = connection_id(&mut client).await;
    send_text(&mut client, "close").await;
    assert_eq!(close_code(&mut client).await, Some(1000));
    let lines = cleanups(&id).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("reason=server"), "{}", lines[0]);
}

#[tokio::test]
async fn cleanup_runs_once_after_the_idle_timeout() {
    let gateway = TestGateway::start(&[probe().toml("idle_timeout_s = 1")]).await;
    let mut client = gateway.connect("probe").await;
    let id = connection_id(&mut client).await;
    assert_eq!(close_code(&mut client).await, Some(1000));
    let lines = cleanups(&id).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("reason=idle"), "{}", lines[0]);
}

#[tokio::test]
async fn a_failed_transfer_closes_with_1011_and_runs_cleanup() {
    let gateway = TestGateway::start(&[probe()]).await;
    for command in ["trap", "err"] {
        let mut client = gateway.connect("probe").await;
        let id = connection_id(&mut client).await;
        send_text(&mut client, command).await;
        assert_eq!(close_code(&mut client).await, Some(1011), "{command}");
        let lines = cleanups(&id).await;
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains("reason=error"), "{}", lines[0]);
        let failures = wait_for_log(&["handler call failed", &id, "transfer"], 1).await;
        assert_eq!(failures.len(), 1, "{failures:#?}");
        if command == "trap" {
            // The guest's own frames are named, down to the handler's
            // transfer method.
            assert!(
                failures[0].contains("guest backtrace:") && failures[0].contains("transfer"),
                "{}",
                failures[0]
            );
        }
    }
}

#[tokio::test]
async fn a_transfer_that_runs_past_its_timeout_is_stopped() {
    let gateway = TestGateway::start(&[probe().toml("timeout_ms = 300")]).await;
    let mut client = gateway.connect("probe").await;
    let id = connection_id(&mut client).await;
    send_text(&mut client, "loop").await;
    assert_eq!(close_code(&mut client).await, Some(1011));
    let failures = wait_for_log(&["handler call failed", &id, "timed out"], 1).await;
    assert_eq!(failures.len(), 1, "{failures:#?}");
    // The gateway keeps serving.
    let mut other = gateway.connect("probe").await;
    assert_eq!(ask(&mut other, "echo:still here").await, "still here");
}

#[tokio::test]
async fn a_non_json_transfer_answer_is_not_a_failure() {
    let gateway = TestGateway::start(&[probe()]).await;
    let mut client = gateway.connect("probe").await;
    send_text(&mut client, "garbage").await;
    assert_eq!(ask(&mut client, "echo:after").await, "after");
}

#[tokio::test]
async fn invalid_utf8_text_closes_with_1007() {
    let gateway = TestGateway::start(&[probe()]).await;
    let mut client = gateway.connect("probe").await;
    let id = connection_id(&mut client).await;
    let frame = Frame::message(vec![0xff, 0xfe, 0x80], OpCode::Data(Data::Text), true);
    client.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(close_code(&mut client).await, Some(1007));
    let lines = cleanups(&id).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("reason=error"), "{}", lines[0]);
}

#[tokio::test]
async fn a_message_over_the_limit_closes_with_1009() {
    let gateway = TestGateway::start(&[probe().toml("max_message_bytes = 1024")]).await;
    let mut client = gateway.connect("probe").await;
    let id = connection_id(&mut client).await;
    send_text(&mut client, &"x".repeat(2048)).await;
    assert_eq!(close_code(&mut client).await, Some(1009));
    let lines = cleanups(&id).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
}

#[tokio::test]
async fn binary_data_reaches_the_handler_as_base64_and_comes_back_as_bytes() {
    let gateway = TestGateway::start(&[probe()]).await;
    let mut client = gateway.connect("probe").await;
    let bytes = vec![0u8, 159, 146, 150, 255];
    client.send(Message::binary(bytes.clone())).await.unwrap();
    assert_eq!(next_message(&mut client).await, Message::binary(bytes));
}
