//! What each open HTTP connection is doing, so that no client can hold a
//! connection others need:
//!
//! - [`Guarded`] wraps the socket and enforces, by what the connection is
//!   doing, how long it may make no progress: a new connection or a request
//!   whose first byte came must deliver its headers within the header
//!   timeout; a connection idle between requests (keep-alive) closes after
//!   the idle timeout; a response write that makes no progress for the write
//!   timeout (a client that never reads) ends the connection.
//! - [`Registry`] knows which connections are idle, so that at the
//!   connection cap the listener closes the longest-idle one to admit a new
//!   client, as nginx does with its keep-alive connections, instead of
//!   leaving every newcomer in the backlog while idle connections hold every
//!   slot.

use std::{
    collections::HashMap,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a connection is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Accepted, nothing received yet.
    New = 0,
    /// Between requests (keep-alive), nothing of the next one received.
    Idle = 1,
    /// Receiving a request's headers.
    Head = 2,
    /// A request is being served (its body read, its response written).
    Busy = 3,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::New,
            1 => Self::Idle,
            2 => Self::Head,
            _ => Self::Busy,
        }
    }

    /// Whether the connection may be closed without losing anything of a
    /// request (nothing of one has arrived).
    fn closable(self) -> bool {
        matches!(self, Self::New | Self::Idle)
    }
}

/// Why the listener closed a connection (the `reason` label of
/// `http_connections_closed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Closed {
    /// Its request headers did not arrive within the header timeout.
    HeaderTimeout = 1,
    /// Idle between requests for the idle timeout.
    IdleTimeout = 2,
    /// A response write made no progress for the write timeout.
    WriteTimeout = 3,
    /// Idle at the connection cap, closed for a newcomer.
    Evicted = 4,
}

impl Closed {
    /// Every reason, for registering the label values up front.
    pub const ALL: [Self; 4] = [
        Self::HeaderTimeout,
        Self::IdleTimeout,
        Self::WriteTimeout,
        Self::Evicted,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "header_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::WriteTimeout => "write_timeout",
            Self::Evicted => "evicted",
        }
    }

    fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|c| *c as u8 == v)
    }
}

/// How long a new connection that has sent nothing is safe from being
/// closed for a newcomer.
pub const NEW_GRACE: Duration = Duration::from_millis(500);

/// How long a connection may make no progress, by what it is doing.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// From the connection's start, or a request's first byte, to the end
    /// of its headers.
    pub header: Duration,
    /// Between requests on a keep-alive connection.
    pub idle: Duration,
    /// A response write making no progress.
    pub write: Duration,
}

/// One connection's state, shared by its socket wrapper, its requests and
/// the registry.
#[derive(Debug)]
pub struct Conn {
    phase: AtomicU8,
    /// How many times the phase was set (a socket re-arms its read deadline
    /// when this moved).
    changes: AtomicU64,
    /// Milliseconds since the registry's epoch when the phase last changed.
    since_ms: AtomicU64,
    epoch: tokio::time::Instant,
    /// Whether the last write to the socket could not complete: the HTTP
    /// library still holds part of a response (the body was handed over,
    /// not yet sent). Such a connection is not idle.
    write_stalled: std::sync::atomic::AtomicBool,
    /// Woken when a connection becomes idle (a newcomer may be waiting).
    idle_notify: Arc<tokio::sync::Notify>,
    /// Whether the socket's last read found nothing (no bytes since): the
    /// HTTP library is waiting for bytes, so it holds no request it has read
    /// ahead (pipelined) either, and the read is parked with a deadline
    /// ([`Guarded`]).
    awaiting_bytes: std::sync::atomic::AtomicBool,
    /// Set while a close is asked of the connection (it is idle and a
    /// newcomer needs its slot), so that it is asked once.
    evict_requested: std::sync::atomic::AtomicBool,
    /// Wakes the connection's task to look at `evict_requested`.
    evict: tokio::sync::Notify,
    /// Why the listener closed it, if it did (`Closed as u8`; 0: it did not).
    closed_by: AtomicU8,
    /// The task last waiting to read from the socket: woken when the
    /// connection turns idle while its socket was not yet found empty, so
    /// that it reads and arms the idle deadline (the HTTP library waits for
    /// the socket, which would not wake it). Not needed, and not woken, when
    /// the read is already parked: its deadline then re-arms itself.
    read_waker: futures::task::AtomicWaker,
}

impl Conn {
    fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
        self.changes.fetch_add(1, Ordering::AcqRel);
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.since_ms.store(ms, Ordering::Release);
    }

    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// When the current phase began.
    fn phase_started(&self) -> tokio::time::Instant {
        let ms = self.since_ms.load(Ordering::Acquire);
        self.epoch + Duration::from_millis(ms)
    }

    /// Whether closing it loses nothing: nothing of a request has arrived
    /// (the HTTP library is waiting for bytes), and every response was sent.
    pub fn closable(&self) -> bool {
        self.phase().closable()
            && self.awaiting_bytes.load(Ordering::Acquire)
            && !self.write_stalled.load(Ordering::Acquire)
    }

    /// Resolves when the listener asks this connection to close; the caller
    /// closes it if [`Conn::closable`], else calls [`Conn::keep`].
    pub async fn close_requested(&self) {
        self.evict.notified().await;
    }

    /// Why the listener closed it, if it did.
    pub fn closed_by(&self) -> Option<Closed> {
        Closed::from_u8(self.closed_by.load(Ordering::Acquire))
    }

    /// Records why the listener closes it.
    pub fn close_for(&self, why: Closed) {
        self.closed_by.store(why as u8, Ordering::Release);
    }

    /// The connection turned out busy when asked to close: it stays, and may
    /// be asked again later.
    pub fn keep(&self) {
        self.evict_requested.store(false, Ordering::Release);
    }

    /// A request's head was parsed: it is being served.
    pub fn request_started(self: &Arc<Self>) -> ResponseGuard {
        self.set(Phase::Busy);
        ResponseGuard(Arc::clone(self))
    }
}

/// Marks the connection idle when the response it belongs to is done
/// (its body written, or dropped).
#[derive(Debug)]
pub struct ResponseGuard(Arc<Conn>);

impl Drop for ResponseGuard {
    fn drop(&mut self) {
        if self.0.phase() == Phase::Busy {
            self.0.set(Phase::Idle);
            if self.0.awaiting_bytes.load(Ordering::Acquire) {
                // The socket was found empty during the request, so the read
                // is parked with a deadline that moves to the idle timeout
                // when it fires (`Guarded::arm_read`), and the connection is
                // closable now. Waking the task here (it is usually the one
                // running: the HTTP library drops the body when it has
                // written it) would make the runtime queue it again and wake
                // a sleeping worker for it: about one thread wake-up per
                // request.
                self.0.idle_notify.notify_waiters();
            } else {
                self.0.read_waker.wake();
            }
        }
    }
}

/// A response body that marks its connection idle once it is written.
pub struct TrackedBody<B> {
    inner: B,
    _guard: ResponseGuard,
}

impl<B> TrackedBody<B> {
    /// `inner`, holding `guard` until it is done.
    pub fn new(inner: B, guard: ResponseGuard) -> Self {
        Self {
            inner,
            _guard: guard,
        }
    }
}

impl<B: HttpBody + Unpin> HttpBody for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The open connections of one listener.
#[derive(Debug)]
pub struct Registry {
    /// Tokio's clock (the same as the system's monotonic clock, but for
    /// tests that pause time).
    epoch: tokio::time::Instant,
    idle_notify: Arc<tokio::sync::Notify>,
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            epoch: tokio::time::Instant::now(),
            idle_notify: Arc::new(tokio::sync::Notify::new()),
            next: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        }
    }
}

/// Removes a connection from its registry when the connection ends.
#[derive(Debug)]
pub struct Registered {
    registry: Arc<Registry>,
    id: u64,
    /// The connection's state.
    pub conn: Arc<Conn>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        // A panic while holding this lock (none of the code under it can
        // panic) would leave a map that is still consistent: keep using it.
        self.conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new connection, registered until the returned handle drops.
    pub fn register(self: &Arc<Self>) -> Registered {
        let conn = Arc::new(Conn {
            phase: AtomicU8::new(Phase::New as u8),
            changes: AtomicU64::new(0),
            write_stalled: std::sync::atomic::AtomicBool::new(false),
            awaiting_bytes: std::sync::atomic::AtomicBool::new(false),
            evict_requested: std::sync::atomic::AtomicBool::new(false),
            since_ms: AtomicU64::new(0),
            epoch: self.epoch,
            idle_notify: Arc::clone(&self.idle_notify),
            evict: tokio::sync::Notify::new(),
            closed_by: AtomicU8::new(0),
            read_waker: futures::task::AtomicWaker::new(),
        });
        conn.set(Phase::New);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Arc::clone(&conn));
        Registered {
            registry: Arc::clone(self),
            id,
            conn,
        }
    }

    /// Resolves when a connection becomes closable (idle, its socket found
    /// empty).
    pub async fn became_idle(&self) {
        self.idle_notify.notified().await;
    }

    /// Asks the connection idle the longest to close; whether there was
    /// one. Candidates: connections between requests, and new ones that have
    /// sent nothing for [`NEW_GRACE`] (a client sends its request right
    /// after connecting); never one that has received any of a request.
    pub fn evict_longest_idle(&self) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let grace = u64::try_from(NEW_GRACE.as_millis()).unwrap_or(u64::MAX);
        let conns = self.lock();
        let victim = conns
            .values()
            .filter(|c| !c.evict_requested.load(Ordering::Acquire) && c.closable())
            .filter(|c| match c.phase() {
                Phase::Idle => true,
                Phase::New => now.saturating_sub(c.since_ms.load(Ordering::Acquire)) >= grace,
                Phase::Head | Phase::Busy => false,
            })
            .min_by_key(|c| c.since_ms.load(Ordering::Acquire));
        match victim {
            Some(c) => {
                c.evict_requested.store(true, Ordering::Release);
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A socket whose reads and writes time out by what the connection is doing
/// (see the module docs). A timeout is an `io::ErrorKind::TimedOut` error,
/// which ends the connection.
pub struct Guarded<S> {
    inner: S,
    conn: Arc<Conn>,
    timeouts: Timeouts,
    /// The phase change the read deadline was set for, and the deadline:
    /// the phase's start plus its limit; while a request is served, the
    /// idle timeout as a checkpoint (not an error: when it fires the
    /// deadline is set again from the phase then).
    armed_for: Option<u64>,
    read_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    write_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Guarded<S> {
    /// Wraps `inner`, the socket of `conn`.
    pub fn new(inner: S, conn: Arc<Conn>, timeouts: Timeouts) -> Self {
        Self {
            inner,
            conn,
            timeouts,
            armed_for: None,
            read_deadline: None,
            write_deadline: None,
        }
    }

    /// Re-arms the read deadline when the phase changed since it was set:
    /// the deadline runs from the start of the current phase. While a
    /// request is served the read has no limit of its own (the body's
    /// timeout in `read_body` and the request timeout bound it); its
    /// deadline is then a checkpoint an idle timeout away, so that a read
    /// left parked when the response ends (nothing wakes it: the socket is
    /// silent) still gets its idle deadline without being woken for it.
    /// Returns the phase.
    fn arm_read(&mut self) -> Phase {
        // The count before the phase: a change in between re-arms next time.
        let changes = self.conn.changes.load(Ordering::Acquire);
        let phase = self.conn.phase();
        if self.armed_for == Some(changes) {
            return phase;
        }
        self.armed_for = Some(changes);
        let limit = match phase {
            Phase::New | Phase::Head => self.timeouts.header,
            Phase::Idle | Phase::Busy => self.timeouts.idle,
        };
        let deadline = self.conn.phase_started() + limit;
        match &mut self.read_deadline {
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.read_deadline = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        phase
    }

    /// Whether the read deadline passed for the phase it was set for (a
    /// checkpoint while serving, or a deadline of an earlier phase, is set
    /// again for the phase now and polled again).
    fn read_expired(&mut self, cx: &mut Context<'_>) -> Option<Phase> {
        loop {
            let phase = self.arm_read();
            let fired = self
                .read_deadline
                .as_mut()
                .is_some_and(|d| d.as_mut().poll(cx).is_ready());
            if !fired {
                return None;
            }
            let changes = self.conn.changes.load(Ordering::Acquire);
            if self.armed_for != Some(changes) {
                // The phase moved since: its own deadline, from its start.
                continue;
            }
            if phase != Phase::Busy {
                return Some(phase);
            }
            // A checkpoint while a request is served: the next one.
            let next = tokio::time::Instant::now() + self.timeouts.idle;
            if let Some(d) = self.read_deadline.as_mut() {
                d.as_mut().reset(next);
            }
        }
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.conn.awaiting_bytes.store(false, Ordering::Release);
                    if this.conn.phase().closable() {
                        // The first byte of a request: its headers are due.
                        this.conn.set(Phase::Head);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.conn.read_waker.register(cx.waker());
                let found_empty = !this.conn.awaiting_bytes.swap(true, Ordering::AcqRel);
                if let Some(phase) = this.read_expired(cx) {
                    let (why, what) = match phase {
                        Phase::Idle => {
                            (Closed::IdleTimeout, "idle keep-alive connection timed out")
                        }
                        _ => (
                            Closed::HeaderTimeout,
                            "request headers did not arrive in time",
                        ),
                    };
                    this.conn.close_for(why);
                    return Poll::Ready(Err(timed_out(what)));
                }
                if found_empty && this.conn.phase().closable() {
                    // Now closable: a newcomer waiting at the cap may take it.
                    this.conn.idle_notify.notify_waiters();
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Guarded<S> {
    /// Passes a write's outcome on. Only bytes written count as progress (a
    /// socket's flush is always ready, whether or not the peer reads); a
    /// write pending for the write timeout since the last progress becomes
    /// an error.
    fn write_progress(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(r) => {
                if !matches!(r, Ok(0)) {
                    self.write_deadline = None;
                    self.conn.write_stalled.store(false, Ordering::Release);
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                self.conn.write_stalled.store(true, Ordering::Release);
                let write = self.timeouts.write;
                let deadline = self
                    .write_deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(write)));
                if deadline.as_mut().poll(cx).is_ready() {
                    self.conn.close_for(Closed::WriteTimeout);
                    Poll::Ready(Err(timed_out(
                        "the client read nothing of the response in time",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.write_progress(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.write_progress(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
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

    #[test]
    fn eviction_picks_the_longest_idle_connection_and_never_a_busy_one() {
        let registry = Arc::new(Registry::default());
        let busy = registry.register();
        let _guard = busy.conn.request_started();
        let waiting = |r: &Registered| r.conn.awaiting_bytes.store(true, Ordering::Release);
        assert!(
            !registry.evict_longest_idle(),
            "a busy connection was picked"
        );
        let older = registry.register();
        std::thread::sleep(Duration::from_millis(5));
        let newer = registry.register();
        waiting(&older);
        waiting(&newer);
        assert!(
            !registry.evict_longest_idle(),
            "a new connection was picked before its grace period"
        );
        std::thread::sleep(NEW_GRACE);
        assert!(registry.evict_longest_idle());
        let asked = |r: &Registered| r.conn.evict_requested.load(Ordering::Acquire);
        assert!(asked(&older) && !asked(&newer));
        assert!(registry.evict_longest_idle());
        assert!(asked(&newer));
        assert!(!registry.evict_longest_idle(), "only the busy one is left");
        assert!(!asked(&busy));
        // One that turned busy when asked stays, and may be asked again.
        newer.conn.keep();
        assert!(registry.evict_longest_idle() && asked(&newer));
        drop(older);
        assert_eq!(registry.lock().len(), 2);
    }

    /// Counts the wake-ups of the task it stands for.
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// One connection's socket (an in-memory pipe; the client holds the
    /// other end) read by a task whose wake-ups are counted, with the
    /// listener's default timeouts.
    struct Socket {
        conn: Registered,
        socket: Guarded<tokio::io::DuplexStream>,
        client: tokio::io::DuplexStream,
        wakes: Arc<Wakes>,
    }

    impl Socket {
        fn new() -> Self {
            let defaults = crate::listener::ListenerLimits::DEFAULT;
            let timeouts = Timeouts {
                header: defaults.header_read_timeout,
                idle: defaults.idle_timeout,
                write: defaults.write_timeout,
            };
            let conn = Arc::new(Registry::default()).register();
            let (ours, client) = tokio::io::duplex(64);
            Self {
                socket: Guarded::new(ours, Arc::clone(&conn.conn), timeouts),
                conn,
                client,
                wakes: Arc::new(Wakes(std::sync::atomic::AtomicUsize::new(0))),
            }
        }

        /// One read, as the HTTP library makes it: `None` while pending.
        fn read(&mut self) -> Option<Result<usize, io::ErrorKind>> {
            use tokio::io::AsyncRead as _;
            let waker = std::task::Waker::from(Arc::clone(&self.wakes));
            let mut cx = Context::from_waker(&waker);
            let mut storage = [0u8; 16];
            let mut buf = ReadBuf::new(&mut storage);
            match Pin::new(&mut self.socket).poll_read(&mut cx, &mut buf) {
                Poll::Pending => None,
                Poll::Ready(r) => Some(r.map(|()| buf.filled().len()).map_err(|e| e.kind())),
            }
        }

        fn wakes(&self) -> usize {
            self.wakes.0.load(Ordering::SeqCst)
        }
    }

    /// A request's response ends with the read parked (the socket found
    /// empty while serving, as the HTTP library leaves it): the connection
    /// is closable at once and its task is not woken for that (a wake-up per
    /// request costs a sleeping worker thread's wake-up), and a silent
    /// connection still closes after the idle timeout (75 s), counted from
    /// when the response ended.
    #[tokio::test(start_paused = true)]
    async fn a_parked_read_gets_the_idle_deadline_without_a_wake_up() {
        let mut s = Socket::new();
        let guard = s.conn.conn.request_started();
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(s.read(), None, "nothing to read while serving");
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(guard);
        assert!(s.conn.conn.closable(), "idle with its socket found empty");
        assert_eq!(s.wakes(), 0, "woken by the response's end");

        // The checkpoint set while serving (75 s from the request's start)
        // fires first: not a timeout, the deadline moves to 75 s from the
        // response's end.
        tokio::time::advance(Duration::from_secs(41)).await;
        assert!(s.wakes() >= 1, "the checkpoint did not fire");
        assert_eq!(s.read(), None, "closed before the idle timeout");
        tokio::time::advance(Duration::from_secs(33)).await;
        assert_eq!(s.read(), None, "closed 74 s after the response");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            s.read(),
            Some(Err(io::ErrorKind::TimedOut)),
            "open 76 s after the response"
        );
        assert_eq!(s.conn.conn.closed_by(), Some(Closed::IdleTimeout));
    }

    /// Bytes read while a request is served (a pipelined request) keep the
    /// connection from being closed when the response ends, and the task
    /// is woken to serve them.
    #[tokio::test(start_paused = true)]
    async fn bytes_read_while_serving_keep_the_connection_and_wake_it() {
        use tokio::io::AsyncWriteExt as _;
        let mut s = Socket::new();
        let guard = s.conn.conn.request_started();
        assert_eq!(s.read(), None, "nothing to read while serving");
        s.client.write_all(b"GET /").await.expect("duplex write");
        assert_eq!(s.read(), Some(Ok(5)), "the next request's bytes");
        let woken = s.wakes();
        drop(guard);
        assert!(
            !s.conn.conn.closable(),
            "closable with a request read ahead"
        );
        assert_eq!(s.wakes(), woken + 1, "not woken to serve it");
    }

    #[test]
    fn a_finished_response_makes_its_connection_idle_again() {
        let registry = Arc::new(Registry::default());
        let c = registry.register();
        let guard = c.conn.request_started();
        assert!(!c.conn.closable());
        drop(guard);
        assert!(!c.conn.closable(), "idle before the socket was found empty");
        c.conn.awaiting_bytes.store(true, Ordering::Release);
        assert!(c.conn.closable());
    }
}

/// The listener's connection metrics.
#[derive(Clone, Debug)]
pub struct ConnMetrics {
    open: prometheus::IntGauge,
    closed: prometheus::IntCounterVec,
}

impl ConnMetrics {
    /// Registers `http_connections_open` and
    /// `http_connections_closed_total{reason}` on `registry`.
    pub fn new(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let open = otus_telemetry::registered(
            registry,
            prometheus::IntGauge::new(
                "http_connections_open",
                "Open connections of the public HTTP listener",
            )?,
        )?;
        let closed = otus_telemetry::registered(
            registry,
            prometheus::IntCounterVec::new(
                prometheus::Opts::new(
                    "http_connections_closed_total",
                    "Connections the public HTTP listener closed, by reason (timeouts; \
                     evicted: idle at the connection cap, for a newcomer)",
                ),
                &["reason"],
            )?,
        )?;
        for why in Closed::ALL {
            closed.with_label_values(&[why.label()]);
        }
        Ok(Self { open, closed })
    }

    /// A connection opened.
    pub fn opened(&self) {
        self.open.inc();
    }

    /// A connection ended; `why` if the listener closed it.
    pub fn ended(&self, why: Option<Closed>) {
        self.open.dec();
        if let Some(why) = why {
            self.closed.with_label_values(&[why.label()]).inc();
        }
    }
}
