//! The gRPC listeners: binding, and a deadline for a new connection's first
//! bytes.
//!
//! An HTTP/2 client sends the connection preface (24 bytes) as soon as it
//! connects; hyper's server waits for it without a limit, so a peer that
//! connects and sends nothing (or a few bytes) would hold a file descriptor
//! and a task forever. [`PrefaceDeadline`] fails such a connection after
//! [`PREFACE_TIMEOUT`]. Connections that sent their preface are left alone:
//! the edge keeps its channels open between calls, and HTTP/2 keep-alive
//! pings (see [`crate::server`]) close the ones whose peer is gone.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use anyhow::Context as _;
use futures::{Stream, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

/// How long a new gRPC connection may take to send the HTTP/2 preface.
pub const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);

/// Length of the HTTP/2 client connection preface
/// (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;

/// Accepted connections of a gRPC port.
pub type Incoming =
    Pin<Box<dyn Stream<Item = io::Result<PrefaceDeadline<tokio::net::TcpStream>>> + Send>>;

/// Binds `addr` (port 0 picks one) for the `what` service; returns the bound
/// address and its connections, each under [`PREFACE_TIMEOUT`].
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<(SocketAddr, Incoming)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} gRPC port {addr}"))?;
    let local = listener.local_addr()?;
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map(|conn| conn.map(|io| PrefaceDeadline::new(io, PREFACE_TIMEOUT)));
    Ok((local, Box::pin(incoming)))
}

/// A connection whose reads fail with `TimedOut` if its first
/// [`PREFACE_LEN`] bytes have not arrived within the deadline; after that,
/// a plain pass-through.
pub struct PrefaceDeadline<S> {
    io: S,
    /// `None` once the preface's length has been read.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    received: usize,
}

impl<S> PrefaceDeadline<S> {
    /// `io` with `timeout` from now for its first bytes.
    pub fn new(io: S, timeout: Duration) -> Self {
        Self {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            received: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PrefaceDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.deadline.is_some() {
                    this.received += buf.filled().len() - before;
                    if this.received >= PREFACE_LEN {
                        this.deadline = None;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut()
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no HTTP/2 connection preface within the deadline",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PrefaceDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<S: Connected<ConnectInfo = TcpConnectInfo>> Connected for PrefaceDeadline<S> {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_fails_at_the_deadline() {
        let (_client, server) = tokio::io::duplex(64);
        let mut conn = PrefaceDeadline::new(server, Duration::from_secs(10));
        let mut buf = [0u8; 8];
        let started = tokio::time::Instant::now();
        let err = conn.read(&mut buf).await.expect_err("nothing was sent");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_preface_does_not_extend_the_deadline() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut conn = PrefaceDeadline::new(server, Duration::from_secs(10));
        client.write_all(b"PRI * HTTP").await.expect("write");
        let mut buf = [0u8; 64];
        assert_eq!(conn.read(&mut buf).await.expect("bytes"), 10);
        let err = conn
            .read(&mut buf)
            .await
            .expect_err("preface never completed");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_preface_a_connection_may_stay_idle() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut conn = PrefaceDeadline::new(server, Duration::from_secs(10));
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 64];
        assert_eq!(conn.read(&mut buf).await.expect("preface"), PREFACE_LEN);
        // Idle for a minute, then more data: still the same connection.
        tokio::time::sleep(Duration::from_secs(60)).await;
        client.write_all(b"frame").await.expect("write");
        assert_eq!(conn.read(&mut buf).await.expect("later bytes"), 5);
    }
}
