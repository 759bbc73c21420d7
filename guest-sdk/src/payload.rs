//! A message body as it crosses a WebSocket: text frames carry text, binary
//! frames carry bytes.

/// A message body: text for a text frame, bytes for a binary frame.
///
/// Conversions pick the frame type from the Rust type:
///
/// ```
/// use wasmgate_guest::Payload;
///
/// assert_eq!(Payload::from("hi"), Payload::Text("hi".into()));
/// assert_eq!(Payload::from(vec![1, 2]), Payload::Binary(vec![1, 2]));
/// assert_eq!(Payload::from(&b"\x00"[..]).as_bytes(), b"\x00");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Payload {
    /// A UTF-8 text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl Payload {
    /// The body's bytes, whatever the frame type.
    ///
    /// ```
    /// assert_eq!(wasmgate_guest::Payload::from("ok").as_bytes(), b"ok");
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Payload::Text(text) => text.as_bytes(),
            Payload::Binary(bytes) => bytes,
        }
    }

    /// The text of a text message, `None` for a binary one.
    ///
    /// ```
    /// use wasmgate_guest::Payload;
    ///
    /// assert_eq!(Payload::from("ok").as_text(), Some("ok"));
    /// assert_eq!(Payload::from(vec![0]).as_text(), None);
    /// ```
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Payload::Text(text) => Some(text),
            Payload::Binary(_) => None,
        }
    }

    /// Whether this is a binary message.
    ///
    /// ```
    /// assert!(wasmgate_guest::Payload::from(vec![0]).is_binary());
    /// ```
    pub fn is_binary(&self) -> bool {
        matches!(self, Payload::Binary(_))
    }

    /// Size of the body in bytes.
    ///
    /// ```
    /// assert_eq!(wasmgate_guest::Payload::from("héllo").len(), 6);
    /// ```
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the body is empty.
    ///
    /// ```
    /// assert!(wasmgate_guest::Payload::from("").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body's bytes, consuming the payload (text becomes its UTF-8 bytes).
    ///
    /// ```
    /// assert_eq!(wasmgate_guest::Payload::from("ok").into_bytes(), b"ok".to_vec());
    /// ```
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Payload::Text(text) => text.into_bytes(),
            Payload::Binary(bytes) => bytes,
        }
    }
}

impl From<String> for Payload {
    fn from(text: String) -> Self {
        Payload::Text(text)
    }
}

impl From<&str> for Payload {
    fn from(text: &str) -> Self {
        Payload::Text(text.to_owned())
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Self {
        Payload::Binary(bytes)
    }
}

impl From<&[u8]> for Payload {
    fn from(bytes: &[u8]) -> Self {
        Payload::Binary(bytes.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_bytes_keep_their_frame_type() {
        let text = Payload::from(String::from("héllo"));
        assert_eq!(text.as_text(), Some("héllo"));
        assert!(!text.is_binary());
        assert_eq!(text.len(), 6);

        let binary = Payload::from(&[0xff, 0x00][..]);
        assert!(binary.is_binary());
        assert_eq!(binary.as_text(), None);
        assert_eq!(binary.into_bytes(), vec![0xff, 0x00]);
    }
}
