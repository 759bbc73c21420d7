use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use wasmgate_tests::*;

#[tokio::test]
async fn echoes_text_as_text_and_binary_as_binary() {
    let gateway = TestGateway::start(&[ServiceSpec::new("echo").handler("echo")]).await;
    let mut client = gateway.connect("echo").await;

    assert_eq!(ask(&mut client, "hello").await, "hello");
    let unicode = "grüße, 世界 🌍";
    assert_eq!(ask(&mut client, unicode).await, unicode);
    let large: String = "0123456789abcdef".repeat(512); // 8 KiB
    assert_eq!(ask(&mut client, &large).await, large);

    let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    client.send(Message::binary(bytes.clone())).await.unwrap();
    match next_message(&mut client).await {
        Message::Binary(echoed) => assert_eq!(echoed.as_ref(), bytes.as_slice()),
        other => panic!("expected binary, got {other:?}"),
    }
    client.send(Message::binary(Vec::new())).await.unwrap();
    assert_eq!(next_message(&mut client).await, Message::binary(Vec::new()));
}

#[tokio::test]
async fn many_clients_each_get_only_their_own_echo() {
    let gateway = TestGateway::start(&[ServiceSpec::new("echo").handler("echo")]).await;
    let mut tasks = Vec::new();
    for n in 0..16 {
        let url = gateway.ws_url("/ws/echo");
        tasks.push(tokio::spawn(async move {
            let (mut client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            for i in 0..50 {
                let text = format!("client {n} message {i}");
                assert_eq!(ask(&mut client, &text).await, text);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}
