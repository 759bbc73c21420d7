//! Admission control: how many sockets a listener holds, in all and per
//! source address, counted from accept until the socket closes, whether it
//! carries plain HTTP or a WebSocket.
//!
//! A socket is admitted with a [`Ticket`] that travels with it ([`Admitted`]
//! wraps the stream, and hyper hands the same stream to the WebSocket after
//! an upgrade), so the count drops exactly when the socket is closed, not
//! when an HTTP exchange ends.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::protocol::{ApiError, ErrNo};

/// The caps of one listener.
#[derive(Debug)]
pub(crate) struct Admission {
    /// Most sockets at once.
    limit: usize,
    /// Most sockets from one source address (IPv6: one /64); 0 = no cap.
    per_address: usize,
    // A std mutex: every critical section is a counter update.
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// The address a per-address cap counts: an IPv4 address, or the /64 an
/// IPv6 address lies in (one host can hold a whole /64). An IPv4-mapped
/// IPv6 address counts as its IPv4 address.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

impl Admission {
    /// Caps of `limit` sockets in all and `per_address` from one address.
    pub fn new(limit: usize, per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            per_address,
            counts: Mutex::default(),
        })
    }

    /// Sockets held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().total
    }

    /// The most sockets this listener holds at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a socket from `peer`, or says which cap refuses it.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Ticket, ApiError> {
        let key = source_key(peer);
        let mut counts = self.lock();
        if counts.total >= self.limit {
            return Err(ErrNo::GATEWAY_FULL.with(self.limit));
        }
        if self.per_address > 0 {
            let held = counts.by_address.get(&key).copied().unwrap_or(0);
            if held >= self.per_address {
                return Err(ErrNo::ADDRESS_FULL.with(self.per_address));
            }
        }
        counts.total += 1;
        if self.per_address > 0 {
            *counts.by_address.entry(key).or_insert(0) += 1;
        }
        Ok(Ticket {
            admission: self.clone(),
            key,
        })
    }
}

/// One admitted socket's place under the caps, given back on drop.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    key: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self.admission.lock();
        counts.total -= 1;
        if self.admission.per_address > 0 {
            if let Some(held) = counts.by_address.get_mut(&self.key) {
                *held -= 1;
                if *held == 0 {
                    counts.by_address.remove(&self.key);
                }
            }
        }
    }
}

/// A stream that holds its [`Ticket`] for as long as it lives.
#[derive(Debug)]
pub(crate) struct Admitted<S> {
    stream: S,
    _ticket: Ticket,
}

impl<S> Admitted<S> {
    pub fn new(stream: S, ticket: Ticket) -> Self {
        Self {
            stream,
            _ticket: ticket,
        }
    }

    /// The stream itself.
    pub fn stream(&self) -> &S {
        &self.stream
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Admitted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Admitted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn caps_in_all_and_per_address_and_release_on_drop() {
        let admission = Admission::new(3, 2);
        let a1 = admission.admit(v4(2)).unwrap();
        let _a2 = admission.admit(v4(2)).unwrap();
        assert_eq!(admission.admit(v4(2)).unwrap_err().code, 2308);
        let _b = admission.admit(v4(3)).unwrap();
        assert_eq!(admission.admit(v4(4)).unwrap_err().code, 2307);
        assert_eq!(admission.held(), 3);
        drop(a1);
        assert_eq!(admission.held(), 2);
        admission.admit(v4(2)).unwrap();
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_slash_64() {
        let admission = Admission::new(10, 1);
        let _first = admission.admit("2001:db8::1".parse().unwrap()).unwrap();
        let refused = admission.admit("2001:db8::ffff:1".parse().unwrap());
        assert_eq!(refused.unwrap_err().code, 2308);
        assert!(admission.admit("2001:db8:0:1::1".parse().unwrap()).is_ok());
        // A mapped IPv4 address is that IPv4 address.
        let _v4 = admission.admit(v4(9)).unwrap();
        let mapped = admission.admit("::ffff:127.0.0.9".parse().unwrap());
        assert_eq!(mapped.unwrap_err().code, 2308);
    }

    #[test]
    fn without_a_per_address_cap_only_the_total_counts() {
        let admission = Admission::new(2, 0);
        let _a = admission.admit(v4(1)).unwrap();
        let _b = admission.admit(v4(1)).unwrap();
        assert_eq!(admission.admit(v4(1)).unwrap_err().code, 2307);
    }
}
