//! The anonymous chat room. Connect to `/ws/chat?room=<name>` (default room
//! `lobby`; names are 1 to 64 letters, digits, `-` or `_`) — or open
//! `/demo/chat` in a browser.
//!
//! - **register** joins the connection to the group `room:<name>`, tells the
//!   others in the room `<nick> joined #<name>` and greets the newcomer with
//!   `you are <nick> in #<name> (<n> others here)`. A bad room name is
//!   refused with errNo 4001.
//! - **transfer** sends the message, as it came (text as text, binary as
//!   binary), to everyone else in the sender's rooms; the sender gets no copy.
//! - **cleanup** tells the rooms the connection was in `<nick> left`.
//! - **http** `GET /http/chat/rooms` lists the rooms that have members, with
//!   their member counts: `{"rooms": [{"room": "lobby", "members": 2}]}`.
//!
//! Nicknames are derived from the connection id. The gateway's groups are
//! the state of the rooms; the one thing stored is each room's name (the key
//! `room/<name>` of the service's key-value store, written when a client
//! joins it), so that the rooms can be listed. Build it with
//! `cargo xtask build-plugins` (writes `plugins/chat/handler.wasm`).

use wasmgate_guest::{
    groups, kv, Closing, Connecting, Context, DataSend, Handler, HandlerError, HttpRequest,
    HttpResponse, Registration,
};

/// The key-value prefix of the rooms' names.
const ROOM_KEYS: &str = "room/";

struct Chat;

/// The group of a room.
fn room_group(room: &str) -> String {
    format!("room:{room}")
}

/// A short anonymous name for a connection.
fn nickname(connection_id: &str) -> String {
    let tag: String = connection_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(6)
        .collect();
    format!("anon-{tag}")
}

fn valid_room(room: &str) -> bool {
    (1..=64).contains(&room.len())
        && room
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Handler for Chat {
    fn register(ctx: &Context, event: Connecting) -> Result<Registration, HandlerError> {
        let room = event.query("room").unwrap_or("lobby");
        if !valid_room(room) {
            return Ok(Registration::refuse(
                4001,
                "room names are 1 to 64 letters, digits, '-' or '_'",
            ));
        }
        let me = ctx.connection_id.as_str();
        let group = room_group(room);
        let nick = nickname(me);
        groups::join(&group, me)?;
        // Read first: a write waits for the store's commit, a read does not.
        let key = format!("{ROOM_KEYS}{room}");
        if !kv::exists(&key)? {
            kv::set(&key, b"")?;
        }
        let others = groups::broadcast_text(&group, &format!("{nick} joined #{room}"), Some(me))?;
        wasmgate_guest::push_text(
            me,
            &format!("you are {nick} in #{room} ({others} others here)"),
        )?;
        Ok(match event.protocols().next() {
            Some(protocol) => Registration::accept_protocol(protocol),
            None => Registration::accept(),
        })
    }

    fn transfer(ctx: &Context, event: DataSend) -> Result<(), HandlerError> {
        let me = ctx.connection_id.as_str();
        let message = event.into_payload()?;
        for group in groups::groups_of(me)? {
            groups::broadcast(&group, message.clone(), Some(me))?;
        }
        Ok(())
    }

    fn cleanup(ctx: &Context, _event: Closing) -> Result<(), HandlerError> {
        let me = ctx.connection_id.as_str();
        let line = format!("{} left", nickname(me));
        for group in groups::groups_of(me)? {
            groups::broadcast_text(&group, &line, None)?;
        }
        Ok(())
    }

    fn http(_ctx: &Context, request: HttpRequest) -> Result<HttpResponse, HandlerError> {
        if (request.http_method.as_str(), request.path.as_str()) != ("GET", "/rooms") {
            return Ok(HttpResponse::json(
                404,
                &serde_json::json!({ "error": "GET /http/chat/rooms" }),
            ));
        }
        let mut rooms = Vec::new();
        for key in kv::keys(ROOM_KEYS)? {
            let room = &key[ROOM_KEYS.len()..];
            let members = groups::all_members(&room_group(room))?.len();
            // A room everyone has left is not listed (its name stays stored).
            if members > 0 {
                rooms.push(serde_json::json!({ "room": room, "members": members }));
            }
        }
        Ok(HttpResponse::json(
            200,
            &serde_json::json!({ "rooms": rooms }),
        ))
    }
}

wasmgate_guest::handler!(Chat);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_and_nicknames() {
        assert!(valid_room("lobby"));
        assert!(valid_room("team-7_b"));
        assert!(!valid_room(""));
        assert!(!valid_room("a b"));
        assert!(!valid_room(&"x".repeat(65)));
        assert_eq!(nickname("q8+3vE/jRWeJq83v=="), "anon-q83vEj");
    }
}
