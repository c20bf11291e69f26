//! The true maximum of a value over a recent window, which a histogram cannot
//! give: `http_server_request_duration_max_seconds` reports, per label set, the
//! largest observation of the current and the previous window (each
//! [`WINDOW`] long), so a scrape every 15–60 s never misses a spike. Grafana's
//! "max" panels take `max_over_time(...[$__range])` of it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::{Duration, Instant},
};

use prometheus::{
    GaugeVec, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
};

/// Length of one window.
pub const WINDOW: Duration = Duration::from_secs(30);

#[derive(Clone, Copy)]
struct Slot {
    current: f64,
    previous: f64,
    started: Instant,
}

impl Slot {
    fn rotate(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed >= WINDOW * 2 {
            *self = Slot {
                current: 0.0,
                previous: 0.0,
                started: now,
            };
        } else if elapsed >= WINDOW {
            self.previous = self.current;
            self.current = 0.0;
            self.started += WINDOW;
        }
    }
}

/// A gauge family of windowed maxima.
/// One label set's window. Observations lock only their own series.
#[derive(Clone)]
pub struct MaxHandle(Arc<Mutex<Slot>>);

impl MaxHandle {
    /// Records `value` (seconds, or any non-negative quantity).
    pub fn observe(&self, value: f64) {
        let now = Instant::now();
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.rotate(now);
        slot.current = slot.current.max(value);
    }
}

/// A family of windowed maxima, one per label set.
#[derive(Clone)]
pub struct WindowedMax {
    slots: Arc<RwLock<HashMap<Vec<String>, MaxHandle>>>,
    gauge: GaugeVec,
}

impl WindowedMax {
    /// A family named `name` with the label names `labels`; register it on a
    /// registry like any collector.
    pub fn new(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<Self> {
        Ok(Self {
            slots: Arc::default(),
            gauge: GaugeVec::new(Opts::new(name, help), labels)?,
        })
    }

    /// The series of `labels` (created on first use). Keep the handle for
    /// repeated observations: this lookup allocates its key.
    pub fn handle(&self, labels: &[&str]) -> MaxHandle {
        let key: Vec<String> = labels.iter().map(|s| (*s).to_owned()).collect();
        if let Some(h) = self
            .slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return h.clone();
        }
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        slots
            .entry(key)
            .or_insert_with(|| {
                MaxHandle(Arc::new(Mutex::new(Slot {
                    current: 0.0,
                    previous: 0.0,
                    started: Instant::now(),
                })))
            })
            .clone()
    }

    /// Records `value` for `labels` (a lookup per call; see [`Self::handle`]).
    pub fn observe(&self, labels: &[&str], value: f64) {
        self.handle(labels).observe(value);
    }
}

impl Collector for WindowedMax {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = Instant::now();
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        for (labels, handle) in slots.iter() {
            let mut slot = handle.0.lock().unwrap_or_else(PoisonError::into_inner);
            slot.rotate(now);
            let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
            self.gauge
                .with_label_values(&refs)
                .set(slot.current.max(slot.previous));
        }
        self.gauge.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_largest_recent_observation() {
        let m = WindowedMax::new("t_max", "test", &["route"]).unwrap();
        m.observe(&["/a"], 0.2);
        m.observe(&["/a"], 1.5);
        m.observe(&["/a"], 0.1);
        // A kept handle writes to the same series.
        m.handle(&["/a"]).observe(2.5);
        m.handle(&["/b"]).observe(0.3);
        let fam = m.collect();
        let value = |route: &str| {
            fam[0]
                .get_metric()
                .iter()
                .find(|s| s.get_label()[0].value() == route)
                .map(|s| s.get_gauge().get_value())
        };
        assert_eq!(value("/a"), Some(2.5));
        assert_eq!(value("/b"), Some(0.3));
    }
}
