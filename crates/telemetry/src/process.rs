//! The process's own metrics (CPU, memory, file descriptors, threads, start
//! time), as the Prometheus client libraries name them.
//!
//! The `prometheus` crate's `ProcessCollector` keeps `process_cpu_seconds_total`
//! in an integer counter of *whole seconds* (it divides clock ticks by the
//! tick rate in integers), so a process using less than a second of CPU in a
//! dashboard's rate window shows 0 and a busier one moves in 1 s steps. This
//! collector serves the same families with the CPU time at the kernel's
//! resolution (one clock tick, 10 ms on Linux).

use prometheus::{
    core::{Collector, Desc},
    proto::{Counter, MetricFamily},
};

const CPU_SECONDS: &str = "process_cpu_seconds_total";

/// The standard process metrics of this process, with precise CPU seconds.
pub struct ProcessCollector {
    inner: prometheus::process_collector::ProcessCollector,
}

impl ProcessCollector {
    /// Metrics of the calling process.
    pub fn for_self() -> Self {
        Self {
            inner: prometheus::process_collector::ProcessCollector::for_self(),
        }
    }
}

/// User plus system CPU time of this process, in seconds.
pub fn cpu_seconds() -> Option<f64> {
    let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
    // Tick counts of a process fit f64's 53-bit mantissa for millions of years.
    Some((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.inner.collect();
        let seconds = cpu_seconds();
        for family in &mut families {
            if family.name() != CPU_SECONDS {
                continue;
            }
            for metric in family.mut_metric() {
                if let Some(seconds) = seconds {
                    let mut counter = Counter::default();
                    counter.set_value(seconds);
                    metric.set_counter(counter);
                }
            }
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use prometheus::Registry;

    use super::*;

    /// CPU time of this process read straight from /proc/self/stat (utime
    /// and stime, fields 14 and 15, in clock ticks): a second reading of the
    /// kernel's count, parsed here independently of procfs.
    fn kernel_cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        // `after` starts at field 3 (state): utime is field 14, stime 15.
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        ticks as f64 / procfs::ticks_per_second() as f64
    }

    fn registry() -> Registry {
        let registry = Registry::new();
        registry
            .register(Box::new(ProcessCollector::for_self()))
            .expect("register");
        registry
    }

    fn scraped_cpu(registry: &Registry) -> f64 {
        registry
            .gather()
            .iter()
            .find(|f| f.name() == CPU_SECONDS)
            .expect("process_cpu_seconds_total is exported")
            .get_metric()[0]
            .get_counter()
            .get_value()
    }

    #[test]
    fn cpu_seconds_have_sub_second_resolution() {
        let registry = registry();
        // Burn CPU until this process has used a whole number of seconds
        // plus 0.3-0.7: a count of whole seconds is then off by at least
        // 0.3 s, a count at the kernel's resolution by a few ticks at most
        // (other test threads run meanwhile).
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut x = 0u64;
        while !(0.3..0.7).contains(&kernel_cpu_seconds().fract()) {
            for i in 0..100_000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
            }
            assert!(
                Instant::now() < deadline,
                "could not reach the test's CPU time"
            );
        }
        std::hint::black_box(x);
        let before = kernel_cpu_seconds();
        let scraped = scraped_cpu(&registry);
        let after = kernel_cpu_seconds();
        assert!(
            scraped > before - 0.05 && scraped < after + 0.05,
            "process_cpu_seconds_total {scraped} while the kernel counts {before}..{after}"
        );
    }

    #[test]
    fn the_other_process_metrics_are_still_exported() {
        let registry = registry();
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        for want in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
        }
    }
}
