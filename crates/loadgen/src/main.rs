//! `otus-load`: the homework's load scenarios in a step load, written to cost
//! little next to the service it measures.
//!
//! Locust (one Python process) spends ~0.74 ms of CPU per request here, as much
//! as the whole service, so on a 2-core machine a campaign driven by it finds
//! the limit of "service + Locust". This generator runs the same scenarios as
//! `loadtest/campaign_locust.py` (shoppers and account holders, 9:1, the same
//! think times, the same request names) on one tokio thread, one HTTP/1.1
//! keep-alive connection per simulated user as Locust's `FastHttpUser`
//! keeps, and writes the same per-step JSON lines the campaign reads.
//!
//! ```sh
//! otus-load --host http://127.0.0.1:8000 --searches /tmp/words.txt \
//!     --steps 50,100,200 --step-seconds 30 --steps-out steps.jsonl
//! ```

mod scenario;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::scenario::{Scenario, Target, User};
use crate::stats::Recorder;

/// The service's limit on words in a query: a shopper stops refining there.
pub const MAX_WORDS: usize = 10;

#[derive(Parser, Debug)]
#[command(
    name = "otus-load",
    about = "Step load of the homework's scenarios (shoppers and account holders, 9:1) against the REST edge",
    long_about = None
)]
struct Args {
    /// The edge's (or the ingress's) base URL.
    #[arg(long, env = "LOAD_HOST", default_value = "http://127.0.0.1:8000")]
    host: String,
    /// A file of searches, one per line: its words of 3+ characters start the shoppers' searches.
    #[arg(long, env = "SEARCHES")]
    searches: PathBuf,
    /// Users per step, comma-separated (each held for --step-seconds).
    #[arg(
        long,
        env = "CAMPAIGN_STEPS",
        default_value = "10,20",
        value_delimiter = ','
    )]
    steps: Vec<usize>,
    /// Seconds per step.
    #[arg(long, env = "CAMPAIGN_STEP_SECONDS", default_value_t = 60.0)]
    step_seconds: f64,
    /// Appends one JSON line per finished step here (the campaign's `steps.jsonl`).
    #[arg(long, env = "CAMPAIGN_STEPS_OUT")]
    steps_out: Option<PathBuf>,
    /// A path prefix before every route (`/otusapp` through the ingress).
    #[arg(long, env = "PATH_PREFIX", default_value = "")]
    path_prefix: String,
    /// A Host header for every request (`arch.homework` through the ingress).
    #[arg(long, env = "HOST_HEADER", default_value = "")]
    host_header: String,
    /// Which users: `campaign` (shoppers and account holders, 9:1, as
    /// loadtest/campaign_locust.py) or `original` (the original solution's
    /// shopper: 1-6 s waits, one refinement per word).
    #[arg(long, value_enum, default_value = "campaign")]
    scenario: Scenario,
    /// Think times off: every user sends its next request as soon as the last is answered
    /// (a closed loop with the scenarios' request mix).
    #[arg(long)]
    no_think: bool,
    /// Seconds before a request counts as failed (Locust's FastHttpUser: 60).
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
}

/// A step's users arrive within its first tenth (3-10 s), which its figures leave out.
fn settle_seconds(step_seconds: f64) -> f64 {
    (step_seconds / 10.0).clamp(3.0, 10.0)
}

fn first_words(path: &PathBuf) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut words: Vec<String> = text
        .split_whitespace()
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_owned)
        .collect();
    words.sort();
    words.dedup();
    if words.is_empty() {
        return Err(format!("{} holds no word of 3+ characters", path.display()));
    }
    Ok(words)
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

// One thread: the generator's own CPU stays one core at most, like Locust's one
// process, and no request pays for a hand-off between threads.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otus-load: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    if args.steps.is_empty() || args.steps.iter().all(|&u| u == 0) {
        return Err("--steps: give at least one step with users".into());
    }
    if !(args.step_seconds.is_finite() && args.step_seconds >= 1.0) {
        return Err("--step-seconds: at least 1".into());
    }
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return Err("--timeout: a positive number of seconds".into());
    }
    let base = args.host.trim_end_matches('/').to_owned();
    if !base.starts_with("http://") {
        return Err(format!(
            "--host {base}: an http:// URL (no TLS in this generator)"
        ));
    }
    let words = first_words(&args.searches)?;
    let target = Arc::new(Target {
        base: format!("{base}{}", args.path_prefix.trim_end_matches('/')),
        host_header: (!args.host_header.is_empty()).then(|| args.host_header.clone()),
        words,
        think: !args.no_think,
        timeout: Duration::from_secs_f64(args.timeout),
        scenario: args.scenario,
    });
    let settle = settle_seconds(args.step_seconds);
    let recorder = Arc::new(Recorder::default());
    let step_length = Duration::from_secs_f64(args.step_seconds);
    let mut users: Vec<CancellationToken> = Vec::new();
    let mut totals = (0u64, 0u64);
    let started = Instant::now();
    eprintln!(
        "otus-load: {} steps of {:.0} s against {} ({:?} scenario; {} first words; think time {})",
        args.steps.len(),
        args.step_seconds,
        target.base,
        args.scenario,
        target.words.len(),
        if target.think { "on" } else { "off" }
    );

    for (index, &wanted) in args.steps.iter().enumerate() {
        let step_start = started + step_length.mul_f64(index as f64);
        let step_end = step_start + step_length;
        let settled = step_start + Duration::from_secs_f64(settle);
        recorder.start_step(settled);
        let wall_start = SystemTime::now();

        // Arrivals (or departures) spread over the settling time, as Locust's
        // spawn rate: |change| / (settle - 1) users per second.
        let change = wanted.abs_diff(users.len());
        let spread = Duration::from_secs_f64((settle - 1.0).max(0.0));
        for i in 0..change {
            let at = step_start + spread.mul_f64(i as f64 / change.max(1) as f64);
            tokio::time::sleep_until(at.into()).await;
            if wanted > users.len() {
                let token = CancellationToken::new();
                let user = User::new(users.len(), Arc::clone(&target), Arc::clone(&recorder))?;
                tokio::spawn(user.run(token.clone()));
                users.push(token);
            } else if let Some(token) = users.pop() {
                token.cancel();
            }
        }
        tokio::time::sleep_until(step_end.into()).await;

        let figures = recorder.finish_step(step_end);
        totals.0 += figures.requests;
        totals.1 += figures.failures;
        let line = figures.to_json(
            index + 1,
            args.steps.len(),
            wanted,
            unix_seconds(wall_start),
            unix_seconds(SystemTime::now()),
        );
        eprintln!(
            "step {}/{}: {wanted} users, {:.1} req/s, p50 {} ms, p99 {} ms, {} failed of {}",
            index + 1,
            args.steps.len(),
            figures.rps(),
            stats::ms(figures.p50),
            stats::ms(figures.p99),
            figures.failures,
            figures.requests
        );
        for (reason, count) in &figures.reasons {
            eprintln!("  failed: {count} x {reason}");
        }
        if let Some(path) = &args.steps_out {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            writeln!(file, "{line}").map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    for token in users {
        token.cancel();
    }
    eprintln!(
        "otus-load: done in {:.0} s: {} requests measured, {} failed; {} requests in all (settling included)",
        started.elapsed().as_secs_f64(),
        totals.0,
        totals.1,
        recorder.all_requests()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settling_is_a_tenth_of_a_step_within_3_to_10_seconds() {
        assert_eq!(settle_seconds(8.0), 3.0);
        assert_eq!(settle_seconds(60.0), 6.0);
        assert_eq!(settle_seconds(300.0), 10.0);
    }

    #[test]
    fn first_words_are_the_distinct_words_of_3_characters_or_more() {
        let path = std::env::temp_dir().join(format!("otus-load-words-{}", std::process::id()));
        std::fs::write(&path, "чайник синий\nв чайник\nлампа ок\n").expect("temp file");
        let words = first_words(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            words,
            Ok(vec!["лампа".to_owned(), "синий".into(), "чайник".into()])
        );
    }
}
