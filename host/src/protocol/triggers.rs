//! The events and answer of the model's other two triggers, as
//! `docs/protocol.md` §9 and §10 spell them: the HTTP API trigger's
//! integration request ([`http_event`]) and integration response
//! ([`IntegrationResponse`]), and the timer event ([`timer_event`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use super::BASE64;

/// The body the model answers, with 502, when a function's answer is not
/// an integration response (its own lower-case `errno` and `error`).
pub const MALFORMED_RESPONSE_BODY: &str = r#"{"errno":403,"error":"Invalid scf response format. please check your scf response format."}"#;

/// What the gateway knows about an HTTP request when it builds the
/// integration request.
#[derive(Debug, Clone)]
pub struct HttpRequest<'a> {
    /// The service addressed (the event's `requestContext.serviceId`).
    pub service: &'a str,
    /// This call's request id.
    pub request_id: &'a str,
    /// The client's address.
    pub source_ip: IpAddr,
    /// The method, e.g. `POST`.
    pub method: &'a str,
    /// The path below `/http/<service>`, beginning with `/`, as sent
    /// (percent-encoded).
    pub path: &'a str,
    /// The route template `path` matched, if the service declares one.
    pub route: Option<&'a str>,
    /// The template's parameters, percent-decoded.
    pub path_parameters: BTreeMap<String, String>,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The raw query string, if any.
    pub query: Option<&'a str>,
    /// The request body.
    pub body: &'a [u8],
}

/// The integration request event for the `http` role. Serialized from
/// borrowed fields: the body may be megabytes.
pub fn http_event(request: &HttpRequest<'_>) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Event<'a> {
        request_context: RequestContext<'a>,
        headers: BTreeMap<String, String>,
        body: Cow<'a, str>,
        is_base64_encoded: bool,
        path_parameters: &'a BTreeMap<String, String>,
        query_string_parameters: &'a BTreeMap<String, Value>,
        header_parameters: serde_json::Map<String, Value>,
        stage_variables: StageVariables,
        path: &'a str,
        query_string: &'a BTreeMap<String, Value>,
        http_method: &'a str,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct RequestContext<'a> {
        service_id: &'a str,
        path: &'a str,
        http_method: &'a str,
        request_id: &'a str,
        identity: serde_json::Map<String, Value>,
        source_ip: String,
        stage: &'static str,
    }
    #[derive(Serialize)]
    struct StageVariables {
        stage: &'static str,
    }
    let (body, is_base64_encoded) = match std::str::from_utf8(request.body) {
        Ok(text) => (Cow::Borrowed(text), false),
        Err(_) => (Cow::Owned(BASE64.encode(request.body)), true),
    };
    let query = query_lists(request.query);
    serde_json::to_string(&Event {
        request_context: RequestContext {
            service_id: request.service,
            path: request.route.unwrap_or(request.path),
            http_method: request.method,
            request_id: request.request_id,
            identity: serde_json::Map::new(),
            source_ip: request.source_ip.to_string(),
            stage: STAGE,
        },
        headers: super::header_fields(request.headers),
        body,
        is_base64_encoded,
        path_parameters: &request.path_parameters,
        query_string_parameters: &query,
        header_parameters: serde_json::Map::new(),
        stage_variables: StageVariables { stage: STAGE },
        path: request.path,
        query_string: &query,
        http_method: request.method,
    })
    .expect("an event of strings serializes")
}

/// The stage of every request: the model's default.
const STAGE: &str = "release";

/// The query parameters, percent-decoded: a key given once maps to its
/// value, a repeated key to the list of its values in order.
fn query_lists(query: Option<&str>) -> BTreeMap<String, Value> {
    let mut map: BTreeMap<String, Value> = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned() {
        match map.get_mut(&key) {
            None => {
                map.insert(key, Value::String(value));
            }
            Some(Value::Array(values)) => values.push(Value::String(value)),
            Some(first) => {
                let first = first.take();
                map.insert(key, Value::Array(vec![first, Value::String(value)]));
            }
        }
    }
    map
}

/// The answer of the `http` role: the integration response, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationResponse {
    /// `statusCode`.
    pub status: StatusCode,
    /// `headers`, a list value as repeated headers, in order.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `body`, Base64-decoded when `isBase64Encoded` is true.
    pub body: Vec<u8>,
}

/// Why an answer is not an integration response (logged; the client gets
/// [`MALFORMED_RESPONSE_BODY`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an integration response: {0}")]
pub struct MalformedResponse(String);

/// Headers the gateway sets itself: a handler's value for one of them is
/// dropped, so it cannot contradict the body's real length or the
/// connection's framing.
const GATEWAY_HEADERS: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

impl IntegrationResponse {
    /// Reads an answer: a JSON object with an integer `statusCode` from 200
    /// to 599; optional `headers`, an object whose values are strings or
    /// lists of strings; optional `body`, a string (null or absent: empty);
    /// optional `isBase64Encoded`, a boolean (true: `body` is standard
    /// Base64). Other fields are ignored.
    pub fn parse(answer: &str) -> Result<Self, MalformedResponse> {
        let malformed = |why: String| MalformedResponse(why);
        let value: Value = serde_json::from_str(answer)
            .map_err(|error| malformed(format!("not JSON ({error})")))?;
        let Value::Object(mut fields) = value else {
            return Err(malformed("not a JSON object".into()));
        };
        let status = fields
            .get("statusCode")
            .and_then(Value::as_u64)
            .filter(|code| (200..=599).contains(code))
            .and_then(|code| StatusCode::from_u16(code as u16).ok())
            .ok_or_else(|| malformed("`statusCode` is not an integer from 200 to 599".into()))?;
        let is_base64 = match fields.get("isBase64Encoded") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(flag)) => *flag,
            Some(_) => return Err(malformed("`isBase64Encoded` is not a boolean".into())),
        };
        let body = match fields.remove("body") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(text)) if is_base64 => BASE64
                .decode(text.as_bytes())
                .map_err(|_| malformed("`body` is not standard Base64".into()))?,
            Some(Value::String(text)) => text.into_bytes(),
            Some(_) => return Err(malformed("`body` is not a string".into())),
        };
        let headers = match fields.get("headers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(headers)) => response_headers(headers).map_err(malformed)?,
            Some(_) => return Err(malformed("`headers` is not an object".into())),
        };
        Ok(Self {
            status,
            headers,
            body,
        })
    }
}

/// The `headers` object as header pairs, a list value as repeated headers.
fn response_headers(
    headers: &serde_json::Map<String, Value>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let mut pairs = Vec::new();
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a header name"))?;
        let values: Vec<&Value> = match value {
            Value::Array(values) => values.iter().collect(),
            value => vec![value],
        };
        for value in values {
            let Value::String(text) = value else {
                return Err(format!(
                    "the header `{name}` is not a string or a list of strings"
                ));
            };
            let value = HeaderValue::from_str(text)
                .map_err(|_| format!("the header `{name}` has a value that cannot be sent"))?;
            if !GATEWAY_HEADERS.contains(&header.as_str()) {
                pairs.push((header.clone(), value));
            }
        }
    }
    Ok(pairs)
}

/// The timer event for the `timer` role: `time` is the tick's scheduled
/// time, as the model writes it (`2019-02-21T11:49:00Z`); `Message` is the
/// timer's message, empty when it has none (always present, so a ported
/// `event['Message']` finds it).
pub fn timer_event(name: &str, time: &str, message: Option<&str>) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Event<'a> {
        r#type: &'static str,
        trigger_name: &'a str,
        time: &'a str,
        message: &'a str,
    }
    serde_json::to_string(&Event {
        r#type: "Timer",
        trigger_name: name,
        time,
        message: message.unwrap_or(""),
    })
    .expect("an event of strings serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request<'a>(
        headers: &'a HeaderMap,
        body: &'a [u8],
        query: Option<&'a str>,
    ) -> HttpRequest<'a> {
        HttpRequest {
            service: "chat",
            request_id: "req",
            source_ip: "10.0.2.14".parse().unwrap(),
            method: "POST",
            path: "/rooms/kitchen",
            route: Some("/rooms/{room}"),
            path_parameters: BTreeMap::from([("room".into(), "kitchen".into())]),
            headers,
            query,
            body,
        }
    }

    #[test]
    fn the_integration_request_has_the_models_fields() {
        let mut headers = HeaderMap::new();
        headers.insert("accept", "text/html".parse().unwrap());
        let event: Value = serde_json::from_str(&http_event(&request(
            &headers,
            br#"{"test":"body"}"#,
            Some("foo=bar&bob=alice&bob=carol&x=%C3%A9"),
        )))
        .unwrap();
        assert_eq!(
            event,
            json!({
                "requestContext": {
                    "serviceId": "chat", "path": "/rooms/{room}", "httpMethod": "POST",
                    "requestId": "req", "identity": {}, "sourceIp": "10.0.2.14", "stage": "release"
                },
                "headers": {"accept": "text/html"},
                "body": "{\"test\":\"body\"}",
                "isBase64Encoded": false,
                "pathParameters": {"room": "kitchen"},
                "queryStringParameters": {"foo": "bar", "bob": ["alice", "carol"], "x": "é"},
                "headerParameters": {},
                "stageVariables": {"stage": "release"},
                "path": "/rooms/kitchen",
                "queryString": {"foo": "bar", "bob": ["alice", "carol"], "x": "é"},
                "httpMethod": "POST"
            })
        );
    }

    #[test]
    fn a_body_that_is_not_utf8_arrives_in_base64() {
        let headers = HeaderMap::new();
        let event: Value =
            serde_json::from_str(&http_event(&request(&headers, b"\xff\x00", None))).unwrap();
        assert_eq!(event["body"], "/wA=");
        assert_eq!(event["isBase64Encoded"], true);
        assert_eq!(event["queryString"], json!({}));
    }

    #[test]
    fn the_models_sample_answer_reads_with_repeated_headers() {
        let answer = IntegrationResponse::parse(
            r#"{"isBase64Encoded": false, "statusCode": 200,
                "headers": {"Content-Type": "text/html", "Key": ["value1", "value2", "value3"]},
                "body": "<html><body><h1>Heading</h1><p>Paragraph.</p></body></html>"}"#,
        )
        .unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        let headers: Vec<(&str, &str)> = answer
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
            .collect();
        assert_eq!(
            headers,
            [
                ("content-type", "text/html"),
                ("key", "value1"),
                ("key", "value2"),
                ("key", "value3")
            ]
        );
        assert!(answer.body.starts_with(b"<html>"));
        let binary = IntegrationResponse::parse(
            r#"{"statusCode":201,"isBase64Encoded":true,"body":"/wA="}"#,
        )
        .unwrap();
        assert_eq!(binary.body, b"\xff\x00");
        assert_eq!(binary.status, StatusCode::CREATED);
        let bare = IntegrationResponse::parse(r#"{"statusCode":204,"extra":1}"#).unwrap();
        assert!(bare.body.is_empty() && bare.headers.is_empty());
        let framing = IntegrationResponse::parse(
            r#"{"statusCode":200,"headers":{"Content-Length":"9","Connection":"close"},"body":"x"}"#,
        )
        .unwrap();
        assert!(framing.headers.is_empty());
    }

    #[test]
    fn every_malformed_answer_is_refused() {
        for answer in [
            "not json",
            "[]",
            "\"ok\"",
            "{}",
            r#"{"statusCode":"200"}"#,
            r#"{"statusCode":200.5}"#,
            r#"{"statusCode":99}"#,
            r#"{"statusCode":101}"#,
            r#"{"statusCode":600}"#,
            r#"{"statusCode":-1}"#,
            r#"{"statusCode":200,"body":{"a":1}}"#,
            r#"{"statusCode":200,"body":5}"#,
            r#"{"statusCode":200,"isBase64Encoded":"yes"}"#,
            r#"{"statusCode":200,"isBase64Encoded":true,"body":"not base64!"}"#,
            r#"{"statusCode":200,"headers":[]}"#,
            r#"{"statusCode":200,"headers":"a: b"}"#,
            r#"{"statusCode":200,"headers":{"a b":"c"}}"#,
            r#"{"statusCode":200,"headers":{"a":5}}"#,
            r#"{"statusCode":200,"headers":{"a":["b",5]}}"#,
            r#"{"statusCode":200,"headers":{"a":"line\r\nbreak"}}"#,
        ] {
            assert!(IntegrationResponse::parse(answer).is_err(), "{answer}");
        }
        assert_eq!(
            serde_json::from_str::<Value>(MALFORMED_RESPONSE_BODY).unwrap()["errno"],
            403
        );
    }

    #[test]
    fn the_timer_event_has_the_models_fields() {
        let event: Value = serde_json::from_str(&timer_event(
            "EveryDay",
            "2019-02-21T11:49:00Z",
            Some("user define msg body"),
        ))
        .unwrap();
        assert_eq!(
            event,
            json!({"Type": "Timer", "TriggerName": "EveryDay", "Time": "2019-02-21T11:49:00Z",
                   "Message": "user define msg body"})
        );
        let bare: Value = serde_json::from_str(&timer_event("t", "x", None)).unwrap();
        assert_eq!(bare["Message"], "");
    }
}
