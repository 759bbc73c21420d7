//! Hostile: a test handler that misbehaves on command, so the integration
//! tests can prove each misbehaviour fails only its own call. Built by the
//! tests' build script; `cargo xtask build-test-plugins` builds it too.
//!
//! | message | behaviour |
//! |---|---|
//! | `bomb` | allocates 1 MiB blocks and touches them until memory runs out |
//! | `recurse` | recurses without end (stack overflow) |
//! | `huge-answer` | answers 2 MiB of JSON |
//! | `bad-utf8` | answers a string that is not valid UTF-8 (the host must refuse to lift it) |
//! | `flood:<n>` | pushes `n` messages of 1 KiB to its own connection, ignoring errors, then pushes `flooded <ok> <failed> <last errNo>` |
//! | `self-push` | pushes `self-push` to its own connection once (the client receives it; it never comes back to transfer) |
//! | `flood-bytes:<n>` | pushes `n` messages of 64 KiB to its own connection, ignoring errors, then logs `flooded-bytes <ok> <failed> <first errNo>` |
//! | `route-bomb:<mib>` | calls `route` with a request of `<mib>` MiB (an array of zeros beside a valid `data send` to itself), then routes a small one; pushes `route-bomb <errNo of the first> <errNo of the second>` |
//! | `log-flood:<n>` | calls `log(info, "")` `n` times, then pushes `logged <n>` |
//! | `newlines` | writes 64 KiB of newlines to stdout, then pushes `printed` |
//! | `forge:<mark>` | writes `<mark>` after a forged line break (`\n`, `\r`, ESC, U+2028) naming service `hc-forge-target` to the log, to stdout and to stderr, then fails with an error string that does the same, 100 KiB long |
//! | `join:<group>` | joins its own connection to `<group>`, pushes back `joined` |
//! | `members:<n>:<group>` | asks for the members of `<group>` `n` times in a row, pushes back `members <ids in the last answer>` |
//! | `members-pages:<limit>:<group>` | reads every member of `<group>` with `members-page`, `limit` a page, pushes back `pages <pages> members <ids> distinct <distinct ids>` |
//! | anything else | pushes it back unchanged |
//!
//! Every call logs `transfer <message prefix>` first, so tests can count calls.

use wasmgate_guest::{Context, DataSend, Handler, HandlerError, LogLevel, Role};

struct Hostile;

impl Handler for Hostile {
    fn handle(ctx: &Context, event: &str) -> Result<String, HandlerError> {
        let command = match ctx.role {
            Role::Transfer => DataSend::from_json(event)?.as_text().map(str::to_owned),
            _ => None,
        };
        match command.as_deref() {
            Some("huge-answer") => return Ok(format!("{{\"pad\":\"{}\"}}", "x".repeat(2 << 20))),
            Some("bad-utf8") => return Ok(invalid_utf8()),
            _ => {}
        }
        wasmgate_guest::dispatch::<Self>(ctx, event)
    }

    fn transfer(ctx: &Context, event: DataSend) -> Result<(), HandlerError> {
        let me = ctx.connection_id.as_str();
        let Some(text) = event.as_text().map(str::to_owned) else {
            return Ok(wasmgate_guest::push(me, event.into_payload()?)?);
        };
        let prefix: String = text.chars().take(16).collect();
        wasmgate_guest::log(LogLevel::Info, &format!("transfer {prefix}"));
        match text.as_str() {
            "bomb" => {
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut block = vec![0u8; 1 << 20];
                    block[0] = blocks.len() as u8;
                    blocks.push(std::hint::black_box(block));
                }
            }
            "recurse" => {
                std::hint::black_box(recurse(1));
                Ok(())
            }
            "self-push" => Ok(wasmgate_guest::push_text(me, "self-push")?),
            "newlines" => {
                print!("{}", "\n".repeat(64 << 10));
                Ok(wasmgate_guest::push_text(me, "printed")?)
            }
            _ if text.starts_with("flood-bytes:") => flood_bytes(me, &text),
            _ if text.starts_with("route-bomb:") => route_bomb(me, &text),
            _ if text.starts_with("log-flood:") => {
                let count: u64 = text["log-flood:".len()..]
                    .parse()
                    .map_err(|_| HandlerError::from("log-flood:<n>"))?;
                for _ in 0..count {
                    wasmgate_guest::log(LogLevel::Info, "");
                }
                Ok(wasmgate_guest::push_text(me, &format!("logged {count}"))?)
            }
            _ if text.starts_with("forge:") => {
                let mark = &text["forge:".len()..];
                let forged = |separator: &str| {
                    format!("innocent{separator}{mark} service=hc-forge-target role=transfer{separator}")
                };
                wasmgate_guest::log(LogLevel::Info, &forged("\n"));
                println!("{}", forged("\r"));
                eprintln!("{}", forged("\u{2028}\u{1b}[2K"));
                Err(HandlerError::from(format!(
                    "{}{}",
                    forged("\n"),
                    "e".repeat(100 << 10)
                )))
            }
            _ => {
                if let Some(group) = text.strip_prefix("join:") {
                    wasmgate_guest::groups::join(group, me)?;
                    return Ok(wasmgate_guest::push_text(me, "joined")?);
                }
                if let Some(rest) = text.strip_prefix("members:") {
                    let (times, group) = rest.split_once(':').unwrap_or(("1", rest));
                    let times: u64 = times
                        .parse()
                        .map_err(|_| HandlerError::from("members:<n>:<group>"))?;
                    let mut last = Vec::new();
                    for _ in 0..times {
                        last = wasmgate_guest::groups::members(group)?;
                    }
                    return Ok(wasmgate_guest::push_text(
                        me,
                        &format!("members {}", last.len()),
                    )?);
                }
                if let Some(rest) = text.strip_prefix("members-pages:") {
                    let (limit, group) = rest.split_once(':').unwrap_or(("1000", rest));
                    let limit: u32 = limit
                        .parse()
                        .map_err(|_| HandlerError::from("members-pages:<limit>:<group>"))?;
                    let (mut pages, mut ids) = (0u64, Vec::new());
                    let mut cursor: Option<String> = None;
                    loop {
                        let page =
                            wasmgate_guest::groups::members_page(group, cursor.as_deref(), limit)?;
                        pages += 1;
                        ids.extend(page.members);
                        match page.cursor {
                            Some(next) => cursor = Some(next),
                            None => break,
                        }
                    }
                    let total = ids.len();
                    ids.sort();
                    ids.dedup();
                    let answer = format!("pages {pages} members {total} distinct {}", ids.len());
                    return Ok(wasmgate_guest::push_text(me, &answer)?);
                }
                if let Some(count) = text.strip_prefix("flood:") {
                    let count: u64 = count.parse().map_err(|_| HandlerError::from("flood:<n>"))?;
                    let block = "f".repeat(1024);
                    let (mut ok, mut failed, mut last) = (0u64, 0u64, 0);
                    for _ in 0..count {
                        match wasmgate_guest::push_text(me, &block) {
                            Ok(()) => ok += 1,
                            Err(error) => {
                                failed += 1;
                                last = error.err_no;
                            }
                        }
                    }
                    let _ = wasmgate_guest::push_text(me, &format!("flooded {ok} {failed} {last}"));
                    return Ok(());
                }
                Ok(wasmgate_guest::push_text(me, &text)?)
            }
        }
    }
}

/// `flood-bytes:<n>`: `n` pushes of 64 KiB to its own connection, then a
/// log line with how many went through and the first refusal's errNo.
fn flood_bytes(me: &str, text: &str) -> Result<(), HandlerError> {
    let count: u64 = text["flood-bytes:".len()..]
        .parse()
        .map_err(|_| HandlerError::from("flood-bytes:<n>"))?;
    let block = "b".repeat(64 << 10);
    let (mut ok, mut failed, mut first) = (0u64, 0u64, 0);
    for _ in 0..count {
        match wasmgate_guest::push_text(me, &block) {
            Ok(()) => ok += 1,
            Err(error) => {
                if failed == 0 {
                    first = error.err_no;
                }
                failed += 1;
            }
        }
    }
    wasmgate_guest::log(
        LogLevel::Info,
        &format!("flooded-bytes {ok} {failed} {first}"),
    );
    Ok(())
}

/// `route-bomb:<mib>`: a `route` request of `<mib>` MiB, then a small one;
/// pushes the errNo of each (0: routed).
fn route_bomb(me: &str, text: &str) -> Result<(), HandlerError> {
    let mib: usize = text["route-bomb:".len()..]
        .parse()
        .map_err(|_| HandlerError::from("route-bomb:<mib>"))?;
    let size = mib << 20;
    let mut bomb = String::with_capacity(size + 256);
    bomb.push_str(r#"{"websocket":{"action":"data send","secConnectionID":""#);
    bomb.push_str(me);
    bomb.push_str(r#"","data":"bomb","pad":["#);
    while bomb.len() < size {
        bomb.push_str("0,");
    }
    bomb.push_str("0]}}");
    let err_no = |result: Result<(), wasmgate_guest::GatewayError>| match result {
        Ok(()) => 0,
        Err(error) => error.err_no,
    };
    let big = err_no(wasmgate_guest::route(&bomb));
    drop(bomb);
    let request = format!(
        r#"{{"websocket":{{"action":"data send","secConnectionID":"{me}","data":"routed"}}}}"#
    );
    let small = err_no(wasmgate_guest::route(&request));
    Ok(wasmgate_guest::push_text(
        me,
        &format!("route-bomb {big} {small}"),
    )?)
}

/// A `String` whose bytes are not UTF-8: what a buggy guest in a language
/// without checked strings could hand the host.
#[allow(unsafe_code)]
fn invalid_utf8() -> String {
    // SAFETY: not safe by Rust's rules on purpose; the string is only handed
    // to the component ABI, which copies its bytes to the host, which must
    // reject them. No Rust code reads it as text.
    unsafe { String::from_utf8_unchecked(vec![b'{', 0xff, 0xfe, b'}']) }
}

// Endless on purpose: the stack overflow is the point.
#[allow(unconditional_recursion)]
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    frame[(depth % 64) as usize] + recurse(depth + 1)
}

wasmgate_guest::handler!(Hostile);
