//! The model's other two triggers, typed: the HTTP API trigger's
//! integration request ([`HttpRequest`], to [`Handler::http`]) and
//! integration response ([`HttpResponse`]), and the timer event
//! ([`TimerEvent`], to [`Handler::timer`]).
//!
//! [`Handler::http`]: crate::Handler::http
//! [`Handler::timer`]: crate::Handler::timer

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::EventError;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A query parameter's value: a key given once has one value, a repeated key
/// the list of its values in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueryValue {
    /// The key was given once.
    One(String),
    /// The key was repeated.
    Many(Vec<String>),
}

impl QueryValue {
    /// Every value, in order.
    pub fn values(&self) -> Vec<&str> {
        match self {
            QueryValue::One(value) => vec![value.as_str()],
            QueryValue::Many(values) => values.iter().map(String::as_str).collect(),
        }
    }
}

/// Where an HTTP request came from and what it addressed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRequestContext {
    /// The service addressed.
    pub service_id: String,
    /// The route template the path matched (`/rooms/{room}`), else the path.
    pub path: String,
    /// The method.
    pub http_method: String,
    /// The call's request id.
    pub request_id: String,
    /// The client's address.
    pub source_ip: String,
    /// Always `release`.
    pub stage: String,
}

/// The HTTP trigger's event, the model's integration request: a request to
/// `/http/<service>/<path…>`.
///
/// ```
/// use wasmgate_guest::HttpRequest;
///
/// let request = HttpRequest::from_json(r#"{
///     "requestContext": {"serviceId": "chat", "path": "/rooms/{room}", "httpMethod": "POST",
///                        "requestId": "r", "identity": {}, "sourceIp": "10.0.2.14", "stage": "release"},
///     "headers": {"content-type": "application/json"},
///     "body": "{\"text\":\"hi\"}", "isBase64Encoded": false,
///     "pathParameters": {"room": "kitchen"},
///     "queryStringParameters": {"tag": ["a", "b"]}, "headerParameters": {},
///     "stageVariables": {"stage": "release"},
///     "path": "/rooms/kitchen", "queryString": {"tag": ["a", "b"]}, "httpMethod": "POST"
/// }"#)?;
/// assert_eq!(request.path_parameter("room"), Some("kitchen"));
/// assert_eq!(request.query("tag"), Some("a"));
/// assert_eq!(request.query_all("tag"), ["a", "b"]);
/// assert_eq!(request.header("Content-Type"), Some("application/json"));
/// let body: serde_json::Value = request.json()?;
/// assert_eq!(body["text"], "hi");
/// # Ok::<(), wasmgate_guest::HandlerError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequest {
    /// Where the request came from and what it addressed.
    #[serde(default)]
    pub request_context: HttpRequestContext,
    /// The request's headers, names in lower case, a repeated header's
    /// values joined with `, `.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body: text, or Base64 when [`is_base64_encoded`](Self::is_base64_encoded).
    #[serde(default)]
    pub body: String,
    /// Whether `body` is Base64 (the body was not UTF-8).
    #[serde(default)]
    pub is_base64_encoded: bool,
    /// The parameters of the route template the path matched.
    #[serde(default)]
    pub path_parameters: BTreeMap<String, String>,
    /// The query parameters, percent-decoded.
    #[serde(default)]
    pub query_string: BTreeMap<String, QueryValue>,
    /// The path below `/http/<service>`, beginning with `/`, as sent.
    #[serde(default)]
    pub path: String,
    /// The method, e.g. `GET`.
    #[serde(default)]
    pub http_method: String,
}

impl HttpRequest {
    /// Reads the event from its JSON.
    pub fn from_json(json: &str) -> Result<Self, EventError> {
        crate::event::from_json("http", json)
    }

    /// A header, by name in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// A query parameter's first value.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query_string
            .get(name)
            .and_then(|value| value.values().first().copied())
    }

    /// Every value of a query parameter, in order (empty when absent).
    pub fn query_all(&self, name: &str) -> Vec<&str> {
        self.query_string
            .get(name)
            .map(QueryValue::values)
            .unwrap_or_default()
    }

    /// A parameter of the matched route template.
    pub fn path_parameter(&self, name: &str) -> Option<&str> {
        self.path_parameters.get(name).map(String::as_str)
    }

    /// The body's bytes, Base64-decoded when it came that way.
    pub fn body_bytes(&self) -> Result<Vec<u8>, EventError> {
        if self.is_base64_encoded {
            Ok(BASE64.decode(&self.body)?)
        } else {
            Ok(self.body.clone().into_bytes())
        }
    }

    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, EventError> {
        let bytes = self.body_bytes()?;
        serde_json::from_slice(&bytes).map_err(|source| EventError::Json {
            event: "http body",
            source,
        })
    }
}

/// The answer to an HTTP request, the model's integration response.
///
/// ```
/// use wasmgate_guest::HttpResponse;
///
/// let answer = HttpResponse::new(200)
///     .header("Content-Type", "text/html")
///     .header("Key", "value1")
///     .header("Key", "value2")
///     .body("<h1>Heading</h1>");
/// assert_eq!(
///     answer.to_json(),
///     r#"{"isBase64Encoded":false,"statusCode":200,"headers":{"Content-Type":"text/html","Key":["value1","value2"]},"body":"<h1>Heading</h1>"}"#
/// );
/// let json = HttpResponse::json(201, &serde_json::json!({"ok": true}));
/// assert!(json.to_json().contains(r#""body":"{\"ok\":true}""#));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    status: u16,
    headers: Vec<(String, Vec<String>)>,
    body: String,
    is_base64_encoded: bool,
}

impl HttpResponse {
    /// An empty answer with this status (200 to 599).
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
            is_base64_encoded: false,
        }
    }

    /// A text answer, `text/plain; charset=utf-8`.
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Self::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(text)
    }

    /// A JSON answer, `application/json`.
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        let body = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
        Self::new(status)
            .header("Content-Type", "application/json")
            .body(body)
    }

    /// Adds a header; adding a name again makes it a repeated header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        match self.headers.iter_mut().find(|(key, _)| *key == name) {
            Some((_, values)) => values.push(value.into()),
            None => self.headers.push((name, vec![value.into()])),
        }
        self
    }

    /// Sets a text body.
    pub fn body(mut self, text: impl Into<String>) -> Self {
        self.body = text.into();
        self.is_base64_encoded = false;
        self
    }

    /// Sets a binary body (sent Base64-encoded, decoded by the gateway).
    pub fn binary(mut self, bytes: &[u8]) -> Self {
        self.body = BASE64.encode(bytes);
        self.is_base64_encoded = true;
        self
    }

    /// The answer of a handler without an HTTP method: 501 with errNo 2603,
    /// as the gateway answers for a handler built before the `http` role.
    pub fn not_handled() -> Self {
        Self::json(
            501,
            &serde_json::json!({
                "errNo": crate::GatewayError::NO_HTTP_HANDLER,
                "errMsg": "the service does not handle HTTP requests",
            }),
        )
    }

    /// The integration response JSON.
    pub fn to_json(&self) -> String {
        let headers: serde_json::Map<String, serde_json::Value> = self
            .headers
            .iter()
            .map(|(name, values)| {
                let value = match values.as_slice() {
                    [one] => serde_json::Value::from(one.as_str()),
                    many => serde_json::Value::from(many.to_vec()),
                };
                (name.clone(), value)
            })
            .collect();
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            is_base64_encoded: bool,
            status_code: u16,
            headers: serde_json::Map<String, serde_json::Value>,
            body: &'a str,
        }
        serde_json::to_string(&Wire {
            is_base64_encoded: self.is_base64_encoded,
            status_code: self.status,
            headers,
            body: &self.body,
        })
        .expect("strings and maps serialize")
    }
}

/// The timer trigger's event: a timer of the service's `service.toml` fired.
///
/// ```
/// let event = wasmgate_guest::TimerEvent::from_json(
///     r#"{"Type":"Timer","TriggerName":"EveryDay","Time":"2019-02-21T11:49:00Z","Message":"hi"}"#,
/// )?;
/// assert_eq!(event.trigger_name, "EveryDay");
/// assert_eq!(event.time, "2019-02-21T11:49:00Z");
/// assert_eq!(event.message, "hi");
/// # Ok::<(), wasmgate_guest::EventError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimerEvent {
    /// Always `Timer`.
    pub r#type: String,
    /// The timer's name.
    pub trigger_name: String,
    /// The tick's scheduled time, UTC, as `2019-02-21T11:49:00Z`.
    pub time: String,
    /// The timer's message, empty when it has none.
    #[serde(default)]
    pub message: String,
}

impl TimerEvent {
    /// Reads the event from its JSON.
    pub fn from_json(json: &str) -> Result<Self, EventError> {
        crate::event::from_json("timer", json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_bodies_round_trip() {
        let request = HttpRequest::from_json(
            r#"{"body":"/wA=","isBase64Encoded":true,"httpMethod":"PUT","path":"/"}"#,
        )
        .unwrap();
        assert_eq!(request.body_bytes().unwrap(), b"\xff\x00");
        let answer: serde_json::Value =
            serde_json::from_str(&HttpResponse::new(200).binary(b"\xff\x00").to_json()).unwrap();
        assert_eq!(answer["isBase64Encoded"], true);
        assert_eq!(answer["body"], "/wA=");
        assert!(HttpRequest::from_json("[]").is_err());
    }

    #[test]
    fn not_handled_is_the_gateways_501() {
        let answer: serde_json::Value =
            serde_json::from_str(&HttpResponse::not_handled().to_json()).unwrap();
        assert_eq!(answer["statusCode"], 501);
        let body: serde_json::Value =
            serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["errNo"], 2603);
    }
}
