use wasmgate_tests::*;

/// A service running the hostile handler, named for its test alone so its
/// log lines are its own.
fn attacker(name: &str, toml: &str) -> ServiceSpec {
    ServiceSpec::new(name).handler("hostile").toml(toml)
}

/// An echo service standing by while another service attacks.
fn victim(name: &str) -> ServiceSpec {
    ServiceSpec::new(name).handler("echo")
}

/// The victim still answers.
async fn victim_serves(gateway: &TestGateway, name: &str) {
    let mut bystander = gateway.connect(name).await;
    assert_eq!(ask(&mut bystander, "still here").await, "still here");
}

#[tokio::test]
async fn a_route_request_larger_than_a_push_body_is_refused_unparsed_and_route_keeps_working() {
    let gateway = TestGateway::start(&[
        attacker("hc-route-bomb", "memory_limit_mb = 64"),
        victim("hc-route-victim"),
    ])
    .await;
    let mut client = gateway.connect("hc-route-bomb").await;
    send_text(&mut client, "route-bomb:16").await;
    // The small request after the bomb is routed: the client gets it first.
    assert_eq!(next_text(&mut client).await, "routed");
    // 16 MiB of zeros is refused for its size (413-class), not parsed into
    // millions of JSON values and then found lacking.
    assert_eq!(next_text(&mut client).await, "route-bomb 2006 0");
    victim_serves(&gateway, "hc-route-victim").await;
}

#[tokio::test]
async fn a_flood_of_empty_log_lines_keeps_256_lines_and_one_note() {
    let gateway = TestGateway::start(&[
        attacker("hc-log-flood", "timeout_ms = 20000"),
        victim("hc-log-victim"),
    ])
    .await;
    let mut client = gateway.connect("hc-log-flood").await;
    assert_eq!(ask(&mut client, "log-flood:100000").await, "logged 100000");
    let note = wait_for_log(
        &[
            "[99745 more log lines of this call dropped]",
            "service=hc-log-flood",
        ],
        1,
    )
    .await;
    assert_eq!(note.len(), 1, "{note:#?}");
    // The `transfer ...` line and 255 empty ones, then the note.
    let lines = log_lines(&["service=hc-log-flood", "stream=log"]);
    assert_eq!(lines.len(), 257, "{:#?}", &lines[..3.min(lines.len())]);
    victim_serves(&gateway, "hc-log-victim").await;
}

#[tokio::test]
async fn newlines_on_stdout_make_256_lines_and_one_note() {
    let gateway =
        TestGateway::start(&[attacker("hc-newlines", ""), victim("hc-newlines-victim")]).await;
    let mut client = gateway.connect("hc-newlines").await;
    assert_eq!(ask(&mut client, "newlines").await, "printed");
    let note = wait_for_log(
        &[
            "[65280 more lines of output dropped]",
            "service=hc-newlines",
        ],
        1,
    )
    .await;
    assert_eq!(note.len(), 1, "{note:#?}");
    let lines = log_lines(&["service=hc-newlines", "stream=stdout"]);
    assert_eq!(lines.len(), 257);
    victim_serves(&gateway, "hc-newlines-victim").await;
}

#[tokio::test]
async fn a_guest_cannot_forge_a_log_line_and_its_error_string_is_cut() {
    let gateway = TestGateway::start(&[attacker("hc-forger", ""), victim("hc-forge-target")]).await;
    let mark = "XMARKX-hc-forge-qz";
    let mut client = gateway.connect("hc-forger").await;
    send_text(&mut client, &format!("forge:{mark}")).await;
    assert_eq!(close_code(&mut client).await, Some(1011));
    // Log call, stdout, stderr and the error string: four records.
    let lines = wait_for_log(&[mark], 4).await;
    assert_eq!(lines.len(), 4, "{lines:#?}");
    for line in &lines {
        // Each is a whole record of the forger (its fields end the line),
        // with the line breaks and terminal controls escaped.
        assert!(line.contains("service=hc-forger "), "{line}");
        assert!(!line.contains(['\r', '\u{1b}', '\u{2028}']), "{line:?}");
    }
    assert!(lines.iter().any(|line| line.contains("innocent\\n")));
    assert!(lines.iter().any(|line| line.contains("innocent\\r")));
    assert!(lines
        .iter()
        .any(|line| line.contains("innocent\\u{2028}\\u{1b}[2K")));
    let failed: Vec<_> = lines
        .iter()
        .filter(|line| line.contains("handler call failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{lines:#?}");
    // 100 KiB of error text, logged as its first KiB and a marker.
    assert!(failed[0].contains("more bytes]"), "{}", failed[0]);
    assert!(failed[0].len() < 2048, "{} bytes", failed[0].len());
    victim_serves(&gateway, "hc-forge-target").await;
}

/// Reads the `flooded-bytes <ok> <failed> <first errNo>` line of `service`.
async fn flood_result(service: &str) -> (u64, u64, i64) {
    let service = format!("service={service} ");
    let lines = wait_for_log(&["flooded-bytes ", &service], 1).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let numbers: Vec<i64> = lines[0]
        .split("flooded-bytes ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .take(3)
        .map(|n| n.parse().unwrap())
        .collect();
    (numbers[0] as u64, numbers[1] as u64, numbers[2])
}

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_at_its_queue_s_bytes_not_its_message_count() {
    // A queue of 100,000 messages would hold all 512 pushes (32 MiB); its
    // 1 MiB of bytes holds 16, plus what the socket buffers take.
    let gateway = TestGateway::start(&[
        attacker(
            "hc-bytes-slow",
            "outbound_queue = 100000\noutbound_queue_bytes = 1048576\ntimeout_ms = 20000",
        ),
        victim("hc-bytes-victim"),
    ])
    .await;
    let mut slow = gateway.connect("hc-bytes-slow").await;
    send_text(&mut slow, "flood-bytes:512").await;
    let (ok, failed, first) = flood_result("hc-bytes-slow").await;
    assert_eq!(ok + failed, 512);
    assert!(failed > 0, "every push of 32 MiB was queued");
    assert_eq!(first, 2203);
    victim_serves(&gateway, "hc-bytes-victim").await;
    assert_eq!(close_code(&mut slow).await, Some(1008));
    let closed = wait_for_log(
        &[
            "connection closed",
            "service=hc-bytes-slow",
            "sent_code=Some(1008)",
        ],
        1,
    )
    .await;
    assert_eq!(closed.len(), 1, "{closed:#?}");
}

#[tokio::test]
async fn the_gateway_wide_outbound_budget_closes_a_client_that_is_behind() {
    // Each connection could hold 64 MiB, but the gateway holds 2 MiB for
    // all of them together.
    let gateway = TestGateway::start_with(
        &[
            attacker(
                "hc-budget-hog",
                "outbound_queue = 100000\noutbound_queue_bytes = 67108864\ntimeout_ms = 20000",
            ),
            victim("hc-budget-victim"),
        ],
        |config| config.outbound_budget_bytes = 2 << 20,
    )
    .await;
    let mut hog = gateway.connect("hc-budget-hog").await;
    send_text(&mut hog, "flood-bytes:512").await;
    let (ok, failed, first) = flood_result("hc-budget-hog").await;
    assert_eq!(ok + failed, 512);
    assert!(failed > 0, "32 MiB were queued within a 2 MiB budget");
    // The hog's own queue had messages waiting: it is the slow client.
    assert_eq!(first, 2203);
    assert_eq!(close_code(&mut hog).await, Some(1008));
    // Its bytes went with it: the victim's messages fit the budget.
    victim_serves(&gateway, "hc-budget-victim").await;
}
