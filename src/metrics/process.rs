//! The standard Prometheus process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`),
//! read at scrape time.
//!
//! On Linux they come from `/proc/self` through the `procfs` crate (no
//! prometheus-client companion crate provides them for prometheus-client
//! 0.24). Elsewhere the families are still present with value 0, so a
//! dashboard built on them never shows "no data" for a missing name.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// One reading of the process figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub start_time_seconds: f64,
}

impl ProcessStats {
    /// Read the figures of this process (zeros where the platform has no
    /// `/proc`, or a read fails).
    pub fn read() -> ProcessStats {
        #[cfg(target_os = "linux")]
        {
            linux::read().unwrap_or_default()
        }
        #[cfg(not(target_os = "linux"))]
        {
            ProcessStats::default()
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::ProcessStats;
    use procfs::process::{LimitValue, Process};

    pub(super) fn read() -> procfs::ProcResult<ProcessStats> {
        let me = Process::myself()?;
        let stat = me.stat()?;
        let ticks = procfs::ticks_per_second().max(1) as f64;
        let boot = procfs::boot_time_secs().unwrap_or(0) as f64;
        let max_fds = match me.limits()?.max_open_files.soft_limit {
            LimitValue::Value(v) => v,
            LimitValue::Unlimited => u64::MAX,
        };
        Ok(ProcessStats {
            cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
            resident_memory_bytes: stat.rss.saturating_mul(procfs::page_size()),
            virtual_memory_bytes: stat.vsize,
            open_fds: me.fd_count().unwrap_or(0) as u64,
            max_fds,
            start_time_seconds: boot + stat.starttime as f64 / ticks,
        })
    }
}

/// Encodes the process metrics on every scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl ProcessCollector {
    pub fn new() -> Self {
        ProcessCollector
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    let m = encoder.encode_descriptor(name, &format!("{help}."), None, g.metric_type())?;
    g.encode(m)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = ProcessStats::read();
        let cpu = ConstCounter::new(s.cpu_seconds);
        let m = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?;
        cpu.encode(m)?;
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            s.resident_memory_bytes as f64,
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            s.virtual_memory_bytes as f64,
        )?;
        gauge(
            &mut encoder,
            "process_open_fds",
            "Number of open file descriptors",
            s.open_fds as f64,
        )?;
        gauge(
            &mut encoder,
            "process_max_fds",
            "Maximum number of open file descriptors",
            s.max_fds as f64,
        )?;
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            s.start_time_seconds,
        )
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = ProcessStats::read();
        assert!(s.resident_memory_bytes > 0, "{s:?}");
        assert!(s.virtual_memory_bytes >= s.resident_memory_bytes, "{s:?}");
        assert!(s.open_fds >= 3 && s.max_fds >= s.open_fds, "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            s.start_time_seconds > 1.0e9 && s.start_time_seconds <= now + 1.0,
            "{s:?}"
        );
    }
}
