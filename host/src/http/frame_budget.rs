//! A gateway-wide budget for frames that are declared before they arrive.
//!
//! A WebSocket frame header announces its payload length, and the frame
//! codec reserves that much buffer as soon as it reads the header. A client
//! that declares a full-size frame and sends nothing would otherwise pin up
//! to `max_message_bytes` per connection (measured: about 86 KiB resident
//! per connection for 256 KiB frames, 10,000 connections).
//!
//! [`FrameBudget`] sits between the socket and the codec and reads frame
//! headers itself. A header that declares more than [`SMALL_FRAME`] bytes is
//! held back until the gateway-wide [`Budget`] has room for the whole
//! payload (first come, first served, so a waiting honest client goes before
//! an attacker's next frame), and the payload must then arrive at
//! [`MIN_RATE`] or faster (never given less than [`MIN_DEADLINE`]): a
//! connection that declares and stalls is cut off, and its share returns to
//! the budget. Small frames pass without waiting.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Frames up to this size never wait for the budget.
pub(crate) const SMALL_FRAME: u64 = 16 << 10;

/// Slowest payload rate a large frame may arrive at, in bytes per second.
const MIN_RATE: u64 = 16 << 10;

/// Least time a large frame's payload is given, whatever its size.
const MIN_DEADLINE: Duration = Duration::from_secs(10);

/// Bytes read from the socket at a time when the codec's own buffer is not
/// the target.
const CHUNK: usize = 4 << 10;

/// Budget units are KiB, so a semaphore's permit count can describe
/// gigabytes.
const UNIT: u64 = 1 << 10;

/// The shared budget, in bytes of declared payload.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    units: Arc<Semaphore>,
    total_units: u32,
}

impl Budget {
    /// A budget of `bytes` (at least one large frame's worth).
    pub fn new(bytes: u64) -> Self {
        let total = (bytes / UNIT).clamp(SMALL_FRAME / UNIT, u64::from(u32::MAX >> 4));
        let total_units = u32::try_from(total).unwrap_or(u32::MAX >> 4);
        Self {
            units: Arc::new(Semaphore::new(total_units as usize)),
            total_units,
        }
    }

    /// Units a frame of `len` bytes takes (never more than the whole budget).
    fn units_for(&self, len: u64) -> u32 {
        u32::try_from(len.div_ceil(UNIT).min(u64::from(self.total_units)))
            .unwrap_or(self.total_units)
    }

    /// A share of `len` bytes, when there is room: for an HTTP request body
    /// that is read whole before its handler runs (`trigger.rs`).
    pub(crate) async fn reserve(&self, len: u64) -> Result<OwnedSemaphorePermit, AcquireError> {
        self.units
            .clone()
            .acquire_many_owned(self.units_for(len))
            .await
    }

    /// Bytes free now.
    #[cfg(test)]
    fn available(&self) -> u64 {
        self.units.available_permits() as u64 * UNIT
    }
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// Where the reader is in the frame stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// At a frame header.
    Header,
    /// Inside a payload with this many bytes still to pass.
    Payload(u64),
}

/// A stream whose reads are metered frame by frame (see the module docs).
pub(crate) struct FrameBudget<S> {
    inner: S,
    budget: Budget,
    /// Bytes read from `inner` and not yet passed on, from `start`.
    pending: Vec<u8>,
    start: usize,
    position: Position,
    /// The budget share of the large frame being read.
    held: Option<OwnedSemaphorePermit>,
    /// A large header waiting for its share.
    waiting: Option<Acquire>,
    /// When the large frame being read must be complete.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> FrameBudget<S> {
    /// Meters `inner` against `budget`.
    pub fn new(inner: S, budget: Budget) -> Self {
        Self {
            inner,
            budget,
            pending: Vec::new(),
            start: 0,
            position: Position::Header,
            held: None,
            waiting: None,
            deadline: None,
        }
    }
}

/// A frame header at the start of `bytes`: its length and its payload's,
/// or `None` if `bytes` do not hold all of it yet.
fn parse_header(bytes: &[u8]) -> Option<(usize, u64)> {
    let [_, second, ..] = *bytes else { return None };
    let masked = second & 0x80 != 0;
    let (extended, short) = match second & 0x7f {
        126 => (2, None),
        127 => (8, None),
        len => (0, Some(u64::from(len))),
    };
    let header_len = 2 + extended + if masked { 4 } else { 0 };
    if bytes.len() < header_len {
        return None;
    }
    let len = short.unwrap_or_else(|| {
        bytes[2..2 + extended]
            .iter()
            .fold(0u64, |len, byte| len << 8 | u64::from(*byte))
    });
    Some((header_len, len))
}

impl<S> FrameBudget<S> {
    fn unread(&self) -> &[u8] {
        &self.pending[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.pending.len() {
            self.pending.clear();
            self.start = 0;
        }
    }

    /// Passes what may pass from `pending` into `buf`; `Pending` only while
    /// a large header waits for its share. Returns how much was passed.
    fn release(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<usize>> {
        let mut passed = 0;
        while !self.unread().is_empty() && buf.remaining() > 0 {
            match self.position {
                Position::Payload(remaining) => {
                    let n = self
                        .unread()
                        .len()
                        .min(buf.remaining())
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    buf.put_slice(&self.unread()[..n]);
                    self.consume(n);
                    passed += n;
                    self.advance_payload(n);
                }
                Position::Header => {
                    let Some((header_len, len)) = parse_header(self.unread()) else {
                        break;
                    };
                    if len > SMALL_FRAME && self.held.is_none() {
                        match self.acquire(cx, len) {
                            Poll::Ready(result) => result?,
                            Poll::Pending if passed > 0 => break,
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                    // A header goes out whole, or waits for a read with room.
                    if buf.remaining() < header_len {
                        break;
                    }
                    buf.put_slice(&self.unread()[..header_len]);
                    self.consume(header_len);
                    passed += header_len;
                    self.position = Position::Payload(len);
                    self.advance_payload(0);
                }
            }
        }
        Poll::Ready(Ok(passed))
    }

    /// Notes `n` more payload bytes passed; at the frame's end, gives its
    /// share back.
    fn advance_payload(&mut self, n: usize) {
        if let Position::Payload(remaining) = self.position {
            let remaining = remaining - n as u64;
            self.position = if remaining == 0 {
                self.held = None;
                self.deadline = None;
                Position::Header
            } else {
                Position::Payload(remaining)
            };
        }
    }

    /// Waits for a large frame's share of the budget, then starts its clock.
    fn acquire(&mut self, cx: &mut Context<'_>, len: u64) -> Poll<io::Result<()>> {
        let units = self.budget.units_for(len);
        let budget = self.budget.units.clone();
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(budget.acquire_many_owned(units)));
        let permit = match waiting.as_mut().poll(cx) {
            Poll::Ready(Ok(permit)) => permit,
            Poll::Ready(Err(_)) => {
                return Poll::Ready(Err(io::Error::other("frame budget closed")))
            }
            Poll::Pending => return Poll::Pending,
        };
        self.waiting = None;
        self.held = Some(permit);
        let allowed = Duration::from_secs(len / MIN_RATE).max(MIN_DEADLINE);
        self.deadline = Some(Box::pin(tokio::time::sleep(allowed)));
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameBudget<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            // Checked on every read, so a payload that trickles in is cut
            // off as surely as one that stalls.
            if let Some(deadline) = &mut this.deadline {
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "a large frame's payload arrived too slowly",
                    )));
                }
            }
            match this.release(cx, buf) {
                Poll::Ready(Ok(0)) => {}
                Poll::Ready(Ok(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
            // Inside a payload with nothing pending and at least a full
            // read's worth to go: read straight into the codec's buffer.
            if let Position::Payload(remaining) = this.position {
                if this.unread().is_empty() && remaining >= buf.remaining() as u64 {
                    let before = buf.filled().len();
                    match Pin::new(&mut this.inner).poll_read(cx, buf) {
                        Poll::Ready(Ok(())) => {
                            let n = buf.filled().len() - before;
                            this.advance_payload(n);
                            return Poll::Ready(Ok(()));
                        }
                        other => return other,
                    }
                }
            }
            // Otherwise read a chunk into `pending` and go round again.
            let mut chunk = [0u8; CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    // End of stream: hand on a partial header as it is, and
                    // let the codec report it.
                    let n = this.unread().len().min(buf.remaining());
                    buf.put_slice(&this.unread()[..n]);
                    this.consume(n);
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => {
                    if this.start > 0 {
                        this.pending.drain(..this.start);
                        this.start = 0;
                    }
                    this.pending.extend_from_slice(read.filled());
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameBudget<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A masked frame header declaring `len` bytes.
    fn header(len: u64) -> Vec<u8> {
        let mut header = vec![0x82];
        match len {
            0..=125 => header.push(0x80 | len as u8),
            126..=0xffff => {
                header.push(0x80 | 126);
                header.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                header.push(0x80 | 127);
                header.extend_from_slice(&len.to_be_bytes());
            }
        }
        header.extend_from_slice(&[1, 2, 3, 4]);
        header
    }

    #[test]
    fn headers_of_every_length_form_are_read() {
        for len in [0, 5, 125, 126, 65535, 65536, 1 << 20] {
            let bytes = header(len);
            assert_eq!(parse_header(&bytes), Some((bytes.len(), len)), "{len}");
            assert_eq!(parse_header(&bytes[..bytes.len() - 1]), None, "{len}");
        }
    }

    #[tokio::test]
    async fn frames_pass_through_unchanged() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut metered = FrameBudget::new(server, Budget::new(1 << 20));
        let mut sent = Vec::new();
        for len in [3u64, 200, 40_000, 0, 70_000] {
            sent.extend(header(len));
            sent.extend((0..len).map(|i| i as u8));
        }
        client.write_all(&sent).await.unwrap();
        drop(client);
        let mut received = Vec::new();
        metered.read_to_end(&mut received).await.unwrap();
        assert_eq!(received, sent);
        assert_eq!(metered.budget.available(), 1 << 20);
    }

    #[tokio::test]
    async fn a_large_header_waits_for_room_and_gives_it_back_at_the_frame_end() {
        let budget = Budget::new(64 << 10);
        let (mut first_client, first_server) = tokio::io::duplex(1 << 20);
        let (mut second_client, second_server) = tokio::io::duplex(1 << 20);
        let mut first = FrameBudget::new(first_server, budget.clone());
        let mut second = FrameBudget::new(second_server, budget.clone());
        let declared = header(48 << 10);
        first_client.write_all(&declared).await.unwrap();
        second_client.write_all(&declared).await.unwrap();
        let mut buf = vec![0u8; 64];
        // The first header takes 48 KiB of the 64 and passes.
        assert_eq!(first.read(&mut buf).await.unwrap(), declared.len());
        assert_eq!(budget.available(), 16 << 10);
        // The second waits while the first frame is incomplete.
        let waited = tokio::time::timeout(Duration::from_millis(100), second.read(&mut buf)).await;
        assert!(waited.is_err(), "the second header passed without room");
        // The first frame's payload completes: its share comes back.
        first_client.write_all(&vec![7u8; 48 << 10]).await.unwrap();
        let mut payload = vec![0u8; 48 << 10];
        first.read_exact(&mut payload).await.unwrap();
        // It goes straight to the header that was waiting, which now passes.
        assert_eq!(second.read(&mut buf).await.unwrap(), declared.len());
        assert_eq!(budget.available(), 16 << 10);
        drop(second);
        assert_eq!(budget.available(), 64 << 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_declared_payload_that_does_not_come_ends_the_stream() {
        let budget = Budget::new(1 << 20);
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut metered = FrameBudget::new(server, budget.clone());
        client.write_all(&header(100 << 10)).await.unwrap();
        let mut buf = vec![0u8; 64];
        assert_eq!(metered.read(&mut buf).await.unwrap(), 14);
        // 100 KiB at 16 KiB/s is 6 s; the floor is 10 s.
        let error = metered.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        drop(metered);
        assert_eq!(budget.available(), 1 << 20);
    }
}
