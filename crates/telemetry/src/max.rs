//! The true maximum of a value over a recent window, which a histogram cannot
//! give: `http_server_request_duration_max_seconds` reports, per label set, the
//! largest observation of the current and the previous window (each
//! [`WINDOW`] long), so a scrape every 15–60 s never misses a spike. Grafana's
//! "max" panels take `max_over_time(...[$__range])` of it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
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
#[derive(Clone)]
pub struct WindowedMax {
    slots: Arc<Mutex<HashMap<Vec<String>, Slot>>>,
    gauge: GaugeVec,
}

impl WindowedMax {
    /// A new family; register it like any collector.
    pub fn new(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<Self> {
        Ok(Self {
            slots: Arc::default(),
            gauge: GaugeVec::new(Opts::new(name, help), labels)?,
        })
    }

    /// Records one observation.
    pub fn observe(&self, labels: &[&str], value: f64) {
        let now = Instant::now();
        let key: Vec<String> = labels.iter().map(|s| (*s).to_owned()).collect();
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = slots.entry(key).or_insert(Slot {
            current: 0.0,
            previous: 0.0,
            started: now,
        });
        slot.rotate(now);
        slot.current = slot.current.max(value);
    }
}

impl Collector for WindowedMax {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        for (labels, slot) in slots.iter_mut() {
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
        let fam = m.collect();
        assert_eq!(fam[0].get_metric()[0].get_gauge().get_value(), 1.5);
    }
}
