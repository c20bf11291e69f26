//! Per-step figures: every answered request's time and outcome after the step
//! settled, summarised as `loadtest/campaign_locust.py` summarises Locust's.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Default)]
struct Step {
    settled: Option<Instant>,
    /// Request name -> response times in ms.
    times: BTreeMap<&'static str, Vec<f64>>,
    failures: BTreeMap<&'static str, u64>,
    /// "name: reason" -> count, for the progress output.
    reasons: BTreeMap<String, u64>,
}

/// Shared by every user; one short lock per answered request.
#[derive(Default)]
pub struct Recorder {
    step: Mutex<Step>,
    /// Every answered or failed request, settling time included (the
    /// denominator of the generator's own CPU per request).
    all: AtomicU64,
}

impl Recorder {
    pub fn start_step(&self, settled: Instant) {
        let mut step = self.lock();
        *step = Step {
            settled: Some(settled),
            ..Step::default()
        };
    }

    /// Records one request that ended now, `took` after it was sent; `failure`
    /// says why it failed, if it did. Requests before the step settled are left out.
    pub fn record(&self, name: &'static str, took: Duration, failure: Option<String>) {
        let now = Instant::now();
        self.all.fetch_add(1, Ordering::Relaxed);
        let mut step = self.lock();
        if step.settled.is_none_or(|s| now < s) {
            return;
        }
        step.times
            .entry(name)
            .or_default()
            .push(took.as_secs_f64() * 1000.0);
        if let Some(reason) = failure {
            *step.failures.entry(name).or_default() += 1;
            *step.reasons.entry(format!("{name}: {reason}")).or_default() += 1;
        }
    }

    /// Requests recorded since the start, settling times included.
    pub fn all_requests(&self) -> u64 {
        self.all.load(Ordering::Relaxed)
    }

    /// Ends the step at `ended` and returns its figures.
    pub fn finish_step(&self, ended: Instant) -> Figures {
        let step = std::mem::take(&mut *self.lock());
        let seconds = step
            .settled
            .map_or(0.0, |s| ended.saturating_duration_since(s).as_secs_f64());
        let mut every: Vec<f64> = step.times.values().flatten().copied().collect();
        let failures: u64 = step.failures.values().sum();
        let mut figures = Figures::of(&mut every, failures, seconds);
        for (name, mut times) in step.times {
            let failed = step.failures.get(name).copied().unwrap_or(0);
            figures
                .by_name
                .push((name, Figures::of(&mut times, failed, seconds)));
        }
        figures.reasons = step.reasons.into_iter().collect();
        figures
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Step> {
        // A panic while holding this lock leaves plain numbers behind: still usable.
        self.step.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Default)]
pub struct Figures {
    pub requests: u64,
    pub failures: u64,
    pub seconds: f64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    pub by_name: Vec<(&'static str, Figures)>,
    pub reasons: Vec<(String, u64)>,
}

/// The smallest value with at least `q` of all values at or below it.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1).min(last)).copied()
}

/// Milliseconds for the progress output.
pub fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn rounded(value: Option<f64>) -> Value {
    value.map_or(Value::Null, |v| json!((v * 100.0).round() / 100.0))
}

impl Figures {
    fn of(times: &mut [f64], failures: u64, seconds: f64) -> Figures {
        times.sort_by(f64::total_cmp);
        Figures {
            requests: times.len() as u64,
            failures,
            seconds,
            p50: percentile(times, 0.50),
            p95: percentile(times, 0.95),
            p99: percentile(times, 0.99),
            max: times.last().copied(),
            ..Figures::default()
        }
    }

    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn summary(&self) -> serde_json::Map<String, Value> {
        let error_pct = if self.requests > 0 {
            100.0 * self.failures as f64 / self.requests as f64
        } else {
            0.0
        };
        let mut out = serde_json::Map::new();
        out.insert("requests".into(), json!(self.requests));
        out.insert("rps".into(), json!((self.rps() * 100.0).round() / 100.0));
        out.insert("failures".into(), json!(self.failures));
        out.insert(
            "error_pct".into(),
            json!((error_pct * 1000.0).round() / 1000.0),
        );
        out.insert("p50_ms".into(), rounded(self.p50));
        out.insert("p95_ms".into(), rounded(self.p95));
        out.insert("p99_ms".into(), rounded(self.p99));
        out.insert("max_ms".into(), rounded(self.max));
        out
    }

    /// The campaign's per-step line (the fields `campaign_locust.py` writes).
    pub fn to_json(
        &self,
        step: usize,
        steps: usize,
        users: usize,
        wall_start: f64,
        wall_end: f64,
    ) -> Value {
        let mut line = serde_json::Map::new();
        line.insert("step".into(), json!(step));
        line.insert("steps".into(), json!(steps));
        line.insert("users".into(), json!(users));
        line.insert(
            "seconds".into(),
            json!((self.seconds * 100.0).round() / 100.0),
        );
        line.insert("wall_start".into(), json!(wall_start));
        line.insert("wall_end".into(), json!(wall_end));
        line.extend(self.summary());
        let by_name: serde_json::Map<String, Value> = self
            .by_name
            .iter()
            .map(|(name, f)| ((*name).to_owned(), Value::Object(f.summary())))
            .collect();
        line.insert("by_name".into(), Value::Object(by_name));
        Value::Object(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.50), Some(100.0));
        assert_eq!(percentile(&values, 0.99), Some(198.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn a_step_counts_only_requests_after_it_settled() {
        let recorder = Recorder::default();
        let settled = Instant::now() + Duration::from_secs(3600);
        recorder.start_step(settled);
        recorder.record("/early", Duration::from_millis(5), None);
        recorder.start_step(Instant::now());
        recorder.record("/a", Duration::from_millis(4), None);
        recorder.record("/a", Duration::from_millis(8), Some("status 503".into()));
        recorder.record("/b", Duration::from_millis(2), None);
        let figures = recorder.finish_step(Instant::now() + Duration::from_secs(2));
        assert_eq!((figures.requests, figures.failures), (3, 1));
        assert_eq!(
            recorder.all_requests(),
            4,
            "the unsettled request counts in all"
        );
        assert_eq!(figures.max, Some(8.0));
        let names: Vec<&str> = figures.by_name.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["/a", "/b"]);
        assert_eq!(figures.reasons, [("/a: status 503".to_owned(), 1)]);
        let line = figures.to_json(1, 3, 10, 0.0, 2.0);
        assert_eq!(line["by_name"]["/a"]["failures"], 1);
        assert_eq!(line["error_pct"], 33.333);
        assert!(line["rps"].as_f64().is_some_and(|r| r > 1.0 && r <= 1.5));
    }
}
