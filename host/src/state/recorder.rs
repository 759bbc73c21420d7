//! A [`Broker`] that reaches no connection: it records what a handler asked
//! for, for `wasmgate invoke`, or forgets it, for the start function of an
//! instance prepared ahead of its event.

use std::sync::Mutex;

use super::connection::{ConnectionInfo, Outbound};
use super::groups::{check_group, MemberPage};
use super::Broker;
use crate::protocol::ApiError;

/// Records every request as one line of text (`push <id> text <text>`,
/// `close <id>`, `join <group> <id>`, ...) and answers as if it succeeded.
/// Groups are not tracked: `members` and `groups-of` answer empty.
#[derive(Debug, Default)]
pub struct Recorder {
    /// `None`: nothing is kept.
    lines: Option<Mutex<Vec<String>>>,
}

impl Recorder {
    /// A recorder that keeps its lines until [`Recorder::take_lines`].
    pub fn new() -> Self {
        Self {
            lines: Some(Mutex::default()),
        }
    }

    /// A recorder that keeps nothing.
    pub fn discarding() -> Self {
        Self { lines: None }
    }

    /// The lines recorded so far, in order; the recorder starts afresh.
    pub fn take_lines(&self) -> Vec<String> {
        self.lines
            .as_ref()
            .map(|lines| std::mem::take(&mut *lines.lock().unwrap_or_else(|e| e.into_inner())))
            .unwrap_or_default()
    }

    fn record(&self, line: impl FnOnce() -> String) {
        if let Some(lines) = &self.lines {
            lines.lock().unwrap_or_else(|e| e.into_inner()).push(line());
        }
    }
}

fn describe(message: &Outbound) -> String {
    match message {
        Outbound::Text(text) => format!("text {}", text.as_str()),
        Outbound::Binary(bytes) => format!("binary {} bytes", bytes.len()),
        Outbound::Ping => "ping".to_owned(),
    }
}

#[async_trait::async_trait]
impl Broker for Recorder {
    async fn deliver(&self, _service: &str, id: &str, message: Outbound) -> Result<(), ApiError> {
        self.record(|| format!("push {id} {}", describe(&message)));
        Ok(())
    }

    async fn close(&self, _service: &str, id: &str) -> Result<(), ApiError> {
        self.record(|| format!("close {id}"));
        Ok(())
    }

    async fn broadcast(
        &self,
        _service: &str,
        group: &str,
        message: Outbound,
        except: Option<&str>,
    ) -> Result<usize, ApiError> {
        check_group(group)?;
        self.record(|| {
            let except = except.map(|id| format!(" except {id}")).unwrap_or_default();
            format!("broadcast {group} {}{except}", describe(&message))
        });
        Ok(0)
    }

    async fn join(&self, _service: &str, group: &str, id: &str) -> Result<(), ApiError> {
        check_group(group)?;
        self.record(|| format!("join {group} {id}"));
        Ok(())
    }

    async fn leave(&self, _service: &str, group: &str, id: &str) -> Result<bool, ApiError> {
        check_group(group)?;
        self.record(|| format!("leave {group} {id}"));
        Ok(false)
    }

    async fn members(&self, _service: &str, group: &str) -> Result<Vec<String>, ApiError> {
        check_group(group)?;
        Ok(Vec::new())
    }

    async fn members_page(
        &self,
        _service: &str,
        group: &str,
        _cursor: Option<&str>,
        _limit: usize,
    ) -> Result<MemberPage, ApiError> {
        check_group(group)?;
        Ok(MemberPage::default())
    }

    async fn groups_of(&self, _service: &str, _id: &str) -> Result<Vec<String>, ApiError> {
        Ok(Vec::new())
    }

    async fn connections(&self, _service: &str) -> Result<Vec<ConnectionInfo>, ApiError> {
        Ok(Vec::new())
    }

    async fn connection(&self, _service: &str, id: &str) -> Result<ConnectionInfo, ApiError> {
        Err(crate::protocol::ErrNo::CONNECTION_NOT_FOUND.with(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Payload, PushRequest};
    use crate::state::route;

    #[tokio::test]
    async fn the_recorder_answers_like_a_broker_and_keeps_the_requests() {
        let recorder = Recorder::new();
        let request = PushRequest::Send {
            connection_id: "a".into(),
            payload: Payload::Text("hi".into()),
        };
        assert_eq!(route(&recorder, "svc", request).await.unwrap(), 1);
        assert_eq!(
            route(
                &recorder,
                "svc",
                PushRequest::Close {
                    connection_id: "a".into()
                }
            )
            .await
            .unwrap(),
            1
        );
        assert_eq!(
            Broker::join(&recorder, "svc", "", "a")
                .await
                .unwrap_err()
                .code,
            2406
        );
        assert_eq!(recorder.take_lines(), ["push a text hi", "close a"]);
        assert!(recorder.take_lines().is_empty());
    }
}
