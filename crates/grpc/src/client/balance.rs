//! Client-side load balancing of gRPC calls over every address a backend's
//! name resolves to.
//!
//! One HTTP/2 connection carries every call, so a channel to a Kubernetes
//! ClusterIP Service sticks to the one pod its connection landed on: pods
//! that HPA adds never get a call (the classic gRPC-on-Kubernetes trap). A
//! [`Balanced`] channel resolves the backend's name again every few seconds
//! (point it at a headless Service: one address per ready pod), keeps one
//! lazily connected [`Channel`] per address, and sends each call to the next
//! address in turn (round robin). A name that resolves to nothing, or fails
//! to resolve, keeps the addresses it had; before the first answer, calls go
//! to the name itself. IP literals are used as they are.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use anyhow::Context as _;
use tonic::transport::{Channel, Endpoint};

/// A boxed future (as `futures::future::BoxFuture`).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How often a backend's name is resolved again.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(5);

/// Resolves `host:port` to socket addresses (DNS by default; tests inject
/// their own).
pub type Resolver =
    Arc<dyn Fn(String, u16) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> + Send + Sync>;

/// The system resolver (`getaddrinfo`, as `tokio::net::lookup_host`).
pub fn dns() -> Resolver {
    Arc::new(|host, port| {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    })
}

/// A gRPC channel that spreads calls over the addresses of its URL's name.
pub struct Balanced {
    shared: Arc<Shared>,
    /// The channel `poll_ready` chose (and reserved a slot on) for the next
    /// `call`.
    picked: Option<Channel>,
}

impl Clone for Balanced {
    /// A clone picks its own channel: a reservation is not shared.
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            picked: None,
        }
    }
}

struct Shared {
    /// One channel per resolved address, in a stable order.
    channels: RwLock<Vec<(SocketAddr, Channel)>>,
    /// The channel to the URL itself, until the name has resolved.
    fallback: Channel,
    next: AtomicUsize,
}

impl Balanced {
    /// A balanced channel to `url`, its name resolved by `resolve` every
    /// `every` (a background task, which ends with the last clone). Must be
    /// called within a Tokio runtime.
    pub fn new(url: &str, every: Duration, resolve: Resolver) -> anyhow::Result<Self> {
        let fallback = endpoint(url)?;
        let uri = fallback.uri().clone();
        let shared = Arc::new(Shared {
            channels: RwLock::new(Vec::new()),
            fallback: fallback.connect_lazy(),
            next: AtomicUsize::new(0),
        });
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        if host.parse::<std::net::IpAddr>().is_err() {
            let scheme = uri.scheme_str().unwrap_or("http").to_owned();
            let port = uri
                .port_u16()
                .unwrap_or(if scheme == "https" { 443 } else { 80 });
            tokio::spawn(refresh(
                Arc::downgrade(&shared),
                host,
                port,
                scheme,
                every,
                resolve,
            ));
        }
        Ok(Self {
            shared,
            picked: None,
        })
    }

    /// The addresses calls are spread over now (empty before the first
    /// resolution, or for an IP literal).
    pub fn addresses(&self) -> Vec<SocketAddr> {
        read(&self.shared.channels)
            .iter()
            .map(|(a, _)| *a)
            .collect()
    }
}

impl Shared {
    /// The next channel in turn (the URL's own before the name resolved).
    fn pick(&self) -> Channel {
        let channels = read(&self.channels);
        if channels.is_empty() {
            return self.fallback.clone();
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % channels.len();
        channels[i].1.clone()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The endpoint settings every backend connection uses.
pub(crate) fn endpoint(url: &str) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("invalid gRPC URL {url:?}"))?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30)))
}

/// Resolves the name every `every` and brings the channel list in line:
/// new addresses get a channel, gone ones lose theirs, the rest keep their
/// connections. Ends when the [`Balanced`] is dropped.
async fn refresh(
    shared: Weak<Shared>,
    host: String,
    port: u16,
    scheme: String,
    every: Duration,
    resolve: Resolver,
) {
    loop {
        let answer = resolve(host.clone(), port).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match answer {
            Ok(mut addrs) if !addrs.is_empty() => {
                addrs.sort_unstable();
                addrs.dedup();
                let current: HashMap<SocketAddr, Channel> =
                    read(&shared.channels).iter().cloned().collect();
                if addrs.len() != current.len() || addrs.iter().any(|a| !current.contains_key(a)) {
                    let next: Vec<(SocketAddr, Channel)> = addrs
                        .iter()
                        .filter_map(|a| {
                            let channel = current.get(a).cloned().or_else(|| {
                                endpoint(&format!("{scheme}://{a}"))
                                    .ok()
                                    .map(|e| e.connect_lazy())
                            })?;
                            Some((*a, channel))
                        })
                        .collect();
                    tracing::info!(%host, addresses = ?addrs, "backend addresses changed");
                    *shared
                        .channels
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
                }
            }
            Ok(_) => tracing::debug!(%host, "name resolved to nothing; keeping the addresses"),
            Err(e) => {
                tracing::debug!(%host, error = %e, "name did not resolve; keeping the addresses")
            }
        }
        drop(shared);
        tokio::time::sleep(every).await;
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Balanced {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = tonic::transport::channel::ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let shared = &self.shared;
        let ready = self
            .picked
            .get_or_insert_with(|| shared.pick())
            .poll_ready(cx);
        if let Poll::Ready(Err(_)) = &ready {
            // The next attempt takes the next channel.
            self.picked = None;
        }
        ready
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        // `poll_ready` picked the channel and reserved its slot; a caller
        // that skipped it breaks tower's contract, and the channel says so.
        let mut channel = self.picked.take().unwrap_or_else(|| self.shared.pick());
        channel.call(req)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A resolver whose answer the test sets.
    fn fixed(answer: Arc<Mutex<Vec<SocketAddr>>>) -> Resolver {
        Arc::new(move |_, _| {
            let a = answer.lock().map(|a| a.clone()).unwrap_or_default();
            Box::pin(async move { Ok(a) })
        })
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn follows_the_name_and_keeps_addresses_when_it_resolves_to_nothing() {
        let a: SocketAddr = "127.0.0.1:7001".parse().expect("addr");
        let b: SocketAddr = "127.0.0.2:7001".parse().expect("addr");
        let answer = Arc::new(Mutex::new(vec![a]));
        let ch = Balanced::new(
            "http://users.example:7001",
            Duration::from_millis(20),
            fixed(answer.clone()),
        )
        .expect("channel");
        until("first address", || ch.addresses() == vec![a]).await;
        *answer.lock().expect("lock") = vec![b, a];
        until("a pod added", || ch.addresses() == vec![a, b]).await;
        *answer.lock().expect("lock") = vec![];
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            ch.addresses(),
            vec![a, b],
            "an empty answer keeps the addresses"
        );
        *answer.lock().expect("lock") = vec![b];
        until("a pod removed", || ch.addresses() == vec![b]).await;
    }

    #[tokio::test]
    async fn ip_literals_are_not_resolved() {
        let asked = Arc::new(AtomicUsize::new(0));
        let count = asked.clone();
        let ch = Balanced::new(
            "http://127.0.0.1:7001",
            Duration::from_millis(20),
            Arc::new(move |_, _| {
                count.fetch_add(1, Ordering::Relaxed);
                Box::pin(async { Ok(Vec::new()) })
            }),
        )
        .expect("channel");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(
            asked.load(Ordering::Relaxed),
            0,
            "an IP literal was resolved"
        );
        assert!(ch.addresses().is_empty());
    }
}
