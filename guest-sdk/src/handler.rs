//! The [`Handler`] trait a plugin implements, and [`dispatch`], which routes a
//! call to the method of its role and turns the method's result into the
//! answer JSON.

use crate::{
    Closing, Connecting, Context, DataSend, HandlerError, HttpRequest, HttpResponse, Registration,
    Role, TimerEvent,
};

/// A WebSocket handler. Implement the methods for the roles the handler serves
/// and export the type with [`handler!`](crate::handler).
///
/// Every method has a default, so a handler overrides only what it needs:
/// [`register`](Handler::register) accepts every client,
/// [`transfer`](Handler::transfer) ignores messages,
/// [`cleanup`](Handler::cleanup) does nothing, [`http`](Handler::http)
/// answers 501 (errNo 2603) and [`timer`](Handler::timer) fails, so that a
/// timer declared for a handler without one shows in the gateway's log.
///
/// The methods are associated functions without `self`: by default the gateway
/// runs every call in a fresh instance, so nothing survives from one call to
/// the next. Keep state in the service's [`kv`](crate::kv) store (durable,
/// shared by every call and connection of the service), put connections in
/// [`groups`](crate::groups) to broadcast to them, and reach one client
/// through [`push`](crate::push).
///
/// An `Err` from a method, or an event whose JSON cannot be read, fails the
/// call: the gateway logs the message and refuses the client (register) or
/// closes the connection (transfer). A panic traps, with the same effect.
///
/// ```
/// use wasmgate_guest::{
///     dispatch, Closing, Connecting, Context, DataSend, Handler, HandlerError, Registration, Role,
/// };
///
/// struct Chat;
///
/// impl Handler for Chat {
///     fn register(_ctx: &Context, event: Connecting) -> Result<Registration, HandlerError> {
///         if event.query("user").is_none() {
///             return Ok(Registration::refuse(4001, "who are you?"));
///         }
///         Ok(match event.protocols().find(|p| *p == "chat") {
///             Some(protocol) => Registration::accept_protocol(protocol),
///             None => Registration::accept(),
///         })
///     }
///
///     fn transfer(ctx: &Context, event: DataSend) -> Result<(), HandlerError> {
///         let text = event.as_text().ok_or("chat messages are text")?;
///         wasmgate_guest::log(wasmgate_guest::LogLevel::Debug, &format!("{}: {text}", ctx.connection_id));
///         Ok(())
///     }
///
///     fn cleanup(ctx: &Context, event: Closing) -> Result<(), HandlerError> {
///         let reason = event.close_reason().map(|r| r.as_str()).unwrap_or("unknown");
///         wasmgate_guest::log(wasmgate_guest::LogLevel::Info, &format!("left: {reason}"));
///         Ok(())
///     }
/// }
///
/// wasmgate_guest::handler!(Chat);
///
/// // Handler logic can be tested natively through `dispatch`:
/// let ctx = Context {
///     service: "chat".into(),
///     role: Role::Register,
///     request_id: "r".into(),
///     connection_id: "id".into(),
///     deadline_ms: u64::MAX,
/// };
/// let answer = dispatch::<Chat>(&ctx, r#"{"websocket":{"action":"connecting","secConnectionID":"id"}}"#);
/// assert_eq!(answer.unwrap(), r#"{"errNo":4001,"errMsg":"who are you?"}"#);
/// ```
pub trait Handler {
    /// Handles one call with the raw event JSON and answers the raw answer
    /// JSON: the component's `handle` export calls this.
    ///
    /// The default parses the event and calls the method of the context's
    /// role through [`dispatch`]. Override it to work with the JSON yourself,
    /// for example to port a handler that already speaks the contract's JSON;
    /// call [`dispatch`] for the events you do not handle.
    ///
    /// ```
    /// use wasmgate_guest::{dispatch, Context, Handler, HandlerError, Role};
    ///
    /// struct Ported;
    ///
    /// impl Handler for Ported {
    ///     fn handle(ctx: &Context, event: &str) -> Result<String, HandlerError> {
    ///         match ctx.role {
    ///             Role::Register => Ok(r#"{"errNo":0,"errMsg":"ok"}"#.to_owned()),
    ///             _ => dispatch::<Self>(ctx, event),
    ///         }
    ///     }
    /// }
    /// # let ctx = Context { service: "s".into(), role: Role::Register, request_id: "r".into(),
    /// #     connection_id: "c".into(), deadline_ms: 0 };
    /// # assert_eq!(Ported::handle(&ctx, "").unwrap(), r#"{"errNo":0,"errMsg":"ok"}"#);
    /// ```
    fn handle(ctx: &Context, event: &str) -> Result<String, HandlerError> {
        dispatch::<Self>(ctx, event)
    }

    /// Decides whether a client may connect. The default accepts it without a
    /// sub-protocol.
    ///
    /// ```
    /// use wasmgate_guest::{Connecting, Context, Handler, HandlerError, Registration};
    ///
    /// struct TokenCheck;
    ///
    /// impl Handler for TokenCheck {
    ///     fn register(_ctx: &Context, event: Connecting) -> Result<Registration, HandlerError> {
    ///         Ok(match event.header("authorization") {
    ///             Some("Bearer secret") => Registration::accept(),
    ///             _ => Registration::refuse(4001, "unauthorised"),
    ///         })
    ///     }
    /// }
    /// ```
    fn register(ctx: &Context, event: Connecting) -> Result<Registration, HandlerError> {
        let _ = (ctx, event);
        Ok(Registration::accept())
    }

    /// Handles a message from a client. The default ignores it.
    ///
    /// ```
    /// use wasmgate_guest::{Context, DataSend, Handler, HandlerError};
    ///
    /// struct Shout;
    ///
    /// impl Handler for Shout {
    ///     fn transfer(ctx: &Context, event: DataSend) -> Result<(), HandlerError> {
    ///         if let Some(text) = event.as_text() {
    ///             wasmgate_guest::push_text(&ctx.connection_id, &text.to_uppercase())?;
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn transfer(ctx: &Context, event: DataSend) -> Result<(), HandlerError> {
        let _ = (ctx, event);
        Ok(())
    }

    /// Runs once when a registered connection has ended, however it ended.
    /// The default does nothing.
    ///
    /// ```
    /// use wasmgate_guest::{Closing, Context, Handler, HandlerError, LogLevel};
    ///
    /// struct Goodbye;
    ///
    /// impl Handler for Goodbye {
    ///     fn cleanup(ctx: &Context, event: Closing) -> Result<(), HandlerError> {
    ///         let code = event.close_code().map_or("none".to_owned(), |c| c.to_string());
    ///         wasmgate_guest::log(LogLevel::Info, &format!("{} closed, code {code}", ctx.connection_id));
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn cleanup(ctx: &Context, event: Closing) -> Result<(), HandlerError> {
        let _ = (ctx, event);
        Ok(())
    }

    /// Answers an HTTP request to `/http/<service>/...`. Its host calls
    /// reach the service's WebSocket connections as any handler's do: a REST
    /// endpoint that posts into a room is a broadcast here. The default
    /// answers 501 with errNo 2603, as the gateway does for a handler built
    /// before this role.
    ///
    /// ```
    /// use wasmgate_guest::{groups, Context, Handler, HandlerError, HttpRequest, HttpResponse};
    ///
    /// struct Rooms;
    ///
    /// impl Handler for Rooms {
    ///     fn http(_ctx: &Context, request: HttpRequest) -> Result<HttpResponse, HandlerError> {
    ///         match (request.http_method.as_str(), request.path_parameter("room")) {
    ///             ("POST", Some(room)) => {
    ///                 let sent = groups::broadcast_text(&format!("room:{room}"), &request.body, None)?;
    ///                 Ok(HttpResponse::json(200, &serde_json::json!({ "delivered": sent })))
    ///             }
    ///             _ => Ok(HttpResponse::text(404, "no such route")),
    ///         }
    ///     }
    /// }
    /// ```
    fn http(ctx: &Context, request: HttpRequest) -> Result<HttpResponse, HandlerError> {
        let _ = (ctx, request);
        Ok(HttpResponse::not_handled())
    }

    /// Runs when a timer of the service's `service.toml` fires. The answer
    /// is not used; an `Err` is logged with the timer's name. The default
    /// fails, saying the handler has no timer method.
    ///
    /// ```
    /// use wasmgate_guest::{groups, Context, Handler, HandlerError, TimerEvent};
    ///
    /// struct Clock;
    ///
    /// impl Handler for Clock {
    ///     fn timer(_ctx: &Context, event: TimerEvent) -> Result<(), HandlerError> {
    ///         groups::broadcast_text("clock", &event.time, None)?;
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn timer(ctx: &Context, event: TimerEvent) -> Result<(), HandlerError> {
        let _ = ctx;
        Err(format!(
            "timer {} fired, but this handler has no timer method",
            event.trigger_name
        )
        .into())
    }
}

/// Parses `event` as the event of the context's role, calls the handler's
/// method for that role and answers the JSON the gateway expects: the
/// [`Registration`] for register, the [`HttpResponse`] for http, `{}` for
/// transfer, cleanup and timer.
///
/// It is what [`Handler::handle`] does by default; call it from an overridden
/// `handle`, or from tests.
///
/// ```
/// use wasmgate_guest::{dispatch, Context, Handler, Role};
///
/// struct Defaults;
/// impl Handler for Defaults {}
///
/// let ctx = Context {
///     service: "chat".into(),
///     role: Role::Transfer,
///     request_id: "r".into(),
///     connection_id: "id".into(),
///     deadline_ms: u64::MAX,
/// };
/// let event = r#"{"websocket":{"action":"data send","secConnectionID":"id","dataType":"text","data":"hi"}}"#;
/// assert_eq!(dispatch::<Defaults>(&ctx, event).unwrap(), "{}");
///
/// // An event that cannot be read fails the call.
/// assert!(dispatch::<Defaults>(&ctx, "not json").is_err());
/// ```
pub fn dispatch<H: Handler + ?Sized>(ctx: &Context, event: &str) -> Result<String, HandlerError> {
    match ctx.role {
        Role::Register => {
            let event = Connecting::from_json(event)?;
            let connection_id = event.connection_id().to_owned();
            Ok(H::register(ctx, event)?.to_json(&connection_id))
        }
        Role::Transfer => {
            H::transfer(ctx, DataSend::from_json(event)?)?;
            Ok(EMPTY_ANSWER.to_owned())
        }
        Role::Cleanup => {
            H::cleanup(ctx, Closing::from_json(event)?)?;
            Ok(EMPTY_ANSWER.to_owned())
        }
        Role::Http => Ok(H::http(ctx, HttpRequest::from_json(event)?)?.to_json()),
        Role::Timer => {
            H::timer(ctx, TimerEvent::from_json(event)?)?;
            Ok(EMPTY_ANSWER.to_owned())
        }
    }
}

/// The answer of roles whose answer the gateway does not read.
const EMPTY_ANSWER: &str = "{}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Payload;
    use serde_json::{json, Value};

    fn ctx(role: Role) -> Context {
        Context {
            service: "test".into(),
            role,
            request_id: "req".into(),
            connection_id: "conn".into(),
            deadline_ms: u64::MAX,
        }
    }

    struct Defaults;
    impl Handler for Defaults {}

    /// Refuses odd rooms, picks the first protocol, fails on `fail` messages.
    struct Rooms;
    impl Handler for Rooms {
        fn register(_ctx: &Context, event: Connecting) -> Result<Registration, HandlerError> {
            let room: u32 = event
                .query("room")
                .unwrap_or("0")
                .parse()
                .map_err(|_| "bad room")?;
            if room % 2 == 1 {
                return Ok(Registration::refuse(4001, format!("room {room} is closed")));
            }
            Ok(event
                .protocols()
                .next()
                .map_or_else(Registration::accept, Registration::accept_protocol))
        }

        fn transfer(_ctx: &Context, event: DataSend) -> Result<(), HandlerError> {
            match event.payload()? {
                Payload::Text(text) if text == "fail" => Err("asked to fail".into()),
                _ => Ok(()),
            }
        }

        fn cleanup(_ctx: &Context, event: Closing) -> Result<(), HandlerError> {
            match event.close_reason() {
                Some(reason) => Err(format!("closed by {reason}").into()),
                None => Ok(()),
            }
        }
    }

    fn connecting(query: &str, protocol: Option<&str>) -> String {
        let mut websocket = json!({"action": "connecting", "secConnectionID": "conn"});
        if let Some(protocol) = protocol {
            websocket["secWebSocketProtocol"] = protocol.into();
        }
        json!({"websocket": websocket, "queryString": {"room": query}}).to_string()
    }

    fn answer(json: Result<String, HandlerError>) -> Value {
        serde_json::from_str(&json.unwrap()).unwrap()
    }

    #[test]
    fn defaults_accept_ignore_and_do_nothing() {
        assert_eq!(
            answer(dispatch::<Defaults>(
                &ctx(Role::Register),
                &connecting("1", Some("a"))
            )),
            json!({"errNo": 0, "errMsg": "ok", "websocket": {"action": "connecting", "secConnectionID": "conn"}})
        );
        let data = DataSend::new("conn", vec![1u8]).to_json();
        assert_eq!(
            dispatch::<Defaults>(&ctx(Role::Transfer), &data).unwrap(),
            "{}"
        );
        let closing = Closing::new("conn").to_json();
        assert_eq!(
            dispatch::<Defaults>(&ctx(Role::Cleanup), &closing).unwrap(),
            "{}"
        );
    }

    #[test]
    fn http_and_timer_defaults_answer_501_and_fail() {
        let request = r#"{"httpMethod":"GET","path":"/x","body":""}"#;
        let answer = answer(dispatch::<Defaults>(&ctx(Role::Http), request));
        assert_eq!(answer["statusCode"], 501);
        let tick =
            r#"{"Type":"Timer","TriggerName":"t","Time":"2019-02-21T11:49:00Z","Message":""}"#;
        let error = dispatch::<Defaults>(&ctx(Role::Timer), tick).unwrap_err();
        assert!(error.message().contains("no timer method"), "{error}");
        let error = dispatch::<Defaults>(&ctx(Role::Timer), "{}").unwrap_err();
        assert!(
            error.message().starts_with("malformed timer event"),
            "{error}"
        );
    }

    #[test]
    fn register_answers_refusals_and_protocols() {
        assert_eq!(
            answer(Rooms::handle(&ctx(Role::Register), &connecting("3", None))),
            json!({"errNo": 4001, "errMsg": "room 3 is closed"})
        );
        assert_eq!(
            answer(Rooms::handle(
                &ctx(Role::Register),
                &connecting("2", Some("chat, binary"))
            ))["websocket"]["secWebSocketProtocol"],
            "chat"
        );
        let error = Rooms::handle(&ctx(Role::Register), &connecting("x", None)).unwrap_err();
        assert_eq!(error.message(), "bad room");
    }

    #[test]
    fn method_errors_become_call_errors() {
        let fail = DataSend::new("conn", "fail").to_json();
        assert_eq!(
            Rooms::handle(&ctx(Role::Transfer), &fail)
                .unwrap_err()
                .message(),
            "asked to fail"
        );
        let closing =
            r#"{"websocket":{"action":"closing","secConnectionID":"conn","closeReason":"idle"}}"#;
        assert_eq!(
            Rooms::handle(&ctx(Role::Cleanup), closing)
                .unwrap_err()
                .message(),
            "closed by idle"
        );
    }

    #[test]
    fn unreadable_events_become_call_errors() {
        let error = Defaults::handle(&ctx(Role::Transfer), "not json").unwrap_err();
        assert!(
            error.message().starts_with("malformed data send event"),
            "{error}"
        );
        let error = Defaults::handle(&ctx(Role::Cleanup), r#"{"websocket":{}}"#).unwrap_err();
        assert!(
            error.message().starts_with("malformed closing event"),
            "{error}"
        );
        let error = Defaults::handle(&ctx(Role::Register), "[]").unwrap_err();
        assert!(
            error.message().starts_with("malformed connecting event"),
            "{error}"
        );

        let bad_base64 = r#"{"websocket":{"action":"data send","secConnectionID":"conn","dataType":"binary","data":"!"}}"#;
        let error = Rooms::handle(&ctx(Role::Transfer), bad_base64).unwrap_err();
        assert!(error.message().contains("Base64"), "{error}");
    }
}
