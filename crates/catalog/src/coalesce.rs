//! Concurrent identical searches share one computation.
//!
//! When a popular search misses the cache (at start, or when its entry
//! expires), every request for it would otherwise run the same query at the
//! same moment: a stampede on the database exactly when it is least
//! prepared. The first request for a key computes; requests for the same key
//! that arrive meanwhile wait for its answer instead of computing their own.
//! If the computing request is cancelled (its client went away), a waiting
//! one takes over, so no waiter is left without an answer.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::watch;

/// Answers being computed, by key. The computing call holds the sender
/// too; when it finishes or is cancelled, the entry goes and the channel
/// closes.
type Inflight<T> = Arc<Mutex<HashMap<String, Arc<watch::Sender<Option<T>>>>>>;

/// Shares one computation among concurrent callers with the same key.
#[derive(Clone)]
pub struct Coalescer<T> {
    inflight: Inflight<T>,
}

impl<T> Default for Coalescer<T> {
    fn default() -> Self {
        Self {
            inflight: Arc::default(),
        }
    }
}

/// Whether an answer was computed by this caller or shared from another's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Computed,
    Shared,
}

/// Removes the key when the computing caller finishes or is cancelled.
struct Leading<T> {
    inflight: Inflight<T>,
    key: String,
}

impl<T> Drop for Leading<T> {
    fn drop(&mut self) {
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl<T: Clone + Send + Sync> Coalescer<T> {
    /// `compute`'s answer for `key`, computed by this call unless another
    /// call for `key` is already computing it.
    pub async fn run<F, Fut>(&self, key: &str, compute: F) -> (T, Source)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let answer = loop {
            let joined = {
                let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
                match inflight.get(key) {
                    Some(tx) => Err(tx.subscribe()),
                    None => {
                        let tx = Arc::new(watch::Sender::new(None));
                        inflight.insert(key.to_owned(), tx.clone());
                        Ok(tx)
                    }
                }
            };
            match joined {
                Ok(tx) => break tx,
                Err(mut rx) => {
                    if let Ok(value) = rx.wait_for(Option::is_some).await
                        && let Some(value) = value.clone()
                    {
                        return (value, Source::Shared);
                    }
                    // The computing call was cancelled before answering:
                    // compute, or wait for whoever got there first.
                }
            }
        };
        let _leading = Leading {
            inflight: self.inflight.clone(),
            key: key.to_owned(),
        };
        let value = compute().await;
        answer.send_replace(Some(value.clone()));
        (value, Source::Computed)
    }

    /// Calls waiting for another call's computation of `key` (for tests).
    pub fn waiting(&self, key: &str) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .map_or(0, |tx| tx.receiver_count())
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use tokio::sync::Notify;

    use super::*;

    /// Polls until `n` calls wait for `key` (bounded).
    async fn until_waiting(c: &Coalescer<u32>, key: &str, n: usize) {
        for _ in 0..10_000 {
            if c.waiting(key) == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("{n} callers never waited for {key}: {}", c.waiting(key));
    }

    #[tokio::test]
    async fn concurrent_calls_for_one_key_compute_once() {
        let c = Coalescer::<u32>::default();
        let computed = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let mut calls = Vec::new();
        for _ in 0..10 {
            let (c, computed, release) = (c.clone(), computed.clone(), release.clone());
            calls.push(tokio::spawn(async move {
                c.run("k", || async move {
                    computed.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    42
                })
                .await
            }));
        }
        until_waiting(&c, "k", 9).await;
        release.notify_one();
        let mut sources = Vec::new();
        for call in calls {
            let (value, source) = call.await.expect("call");
            assert_eq!(value, 42);
            sources.push(source);
        }
        assert_eq!(computed.load(Ordering::SeqCst), 1, "one computation");
        assert_eq!(
            sources.iter().filter(|s| **s == Source::Computed).count(),
            1
        );
        // Done: the next call computes afresh.
        assert_eq!(c.run("k", || async { 7 }).await, (7, Source::Computed));
    }

    #[tokio::test]
    async fn other_keys_do_not_wait() {
        let c = Coalescer::<u32>::default();
        let release = Arc::new(Notify::new());
        let held = {
            let (c, release) = (c.clone(), release.clone());
            tokio::spawn(async move {
                c.run("slow", || async move {
                    release.notified().await;
                    1
                })
                .await
            })
        };
        assert_eq!(c.run("fast", || async { 2 }).await, (2, Source::Computed));
        release.notify_one();
        assert_eq!(held.await.expect("call"), (1, Source::Computed));
    }

    #[tokio::test]
    async fn a_cancelled_computation_is_taken_over_by_a_waiter() {
        let c = Coalescer::<u32>::default();
        let computed = Arc::new(AtomicUsize::new(0));
        let leader = {
            let (c, computed) = (c.clone(), computed.clone());
            tokio::spawn(async move {
                c.run("k", || async move {
                    computed.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<u32>().await
                })
                .await
            })
        };
        // The leader is computing (it never finishes by itself).
        for _ in 0..10_000 {
            if computed.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let follower = {
            let (c, computed) = (c.clone(), computed.clone());
            tokio::spawn(async move {
                c.run("k", || async move {
                    computed.fetch_add(1, Ordering::SeqCst);
                    5
                })
                .await
            })
        };
        until_waiting(&c, "k", 1).await;
        leader.abort();
        assert_eq!(follower.await.expect("follower"), (5, Source::Computed));
        assert_eq!(computed.load(Ordering::SeqCst), 2);
    }
}
