//! Percentiles, process memory, and the report (a table for people, JSON for tools).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// p50 / p99 / max of a set of durations, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Nearest-rank percentiles.
    pub fn of(samples: &[Duration]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Latency {
            count: ms.len(),
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: ms[ms.len() - 1],
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n={})",
            self.p50_ms, self.p99_ms, self.max_ms, self.count
        )
    }
}

/// Memory of a process, from /proc/<pid>/status.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Memory {
    /// Resident set size now, KiB.
    pub rss_kib: u64,
    /// Peak resident set size so far, KiB.
    pub hwm_kib: u64,
}

impl Memory {
    /// `None` when the process is gone or /proc is not there.
    pub fn of(pid: u32) -> Option<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        };
        Some(Memory {
            rss_kib: field("VmRSS:")?,
            hwm_kib: field("VmHWM:")?,
        })
    }

    pub fn mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
}

/// CPU time a process has used (user + system, all threads), from /proc/<pid>/stat.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct CpuTime {
    pub ms: f64,
}

impl CpuTime {
    /// `None` when the process is gone or /proc is not there.
    pub fn of(pid: u32) -> Option<CpuTime> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces; fields are counted after its closing paren.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
        // utime and stime are fields 14 and 15 of the line, in clock ticks (USER_HZ, 100
        // on Linux).
        let total = ticks(11)? + ticks(12)?;
        Some(CpuTime {
            ms: total as f64 * 10.0,
        })
    }

    pub fn since(self, earlier: CpuTime) -> f64 {
        self.ms - earlier.ms
    }
}

/// CPU used by Portico and by the simulator itself, in milliseconds (10 ms resolution).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct CpuSplit {
    pub portico_ms: f64,
    pub simulator_ms: f64,
}

impl fmt::Display for CpuSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "portico {:.0} ms, simulator {:.0} ms",
            self.portico_ms, self.simulator_ms
        )
    }
}

/// Everything `portico-load` measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub variant: String,
    pub streams: usize,
    pub routes: usize,
    pub backends: usize,
    /// Portico before any stream connected (config loaded and translated).
    pub rss_before: Memory,
    /// After every stream holds the complete config.
    pub rss_synced: Memory,
    /// After the changes.
    pub rss_after: Memory,
    /// (rss_synced - rss_before) / streams, KiB: per-stream cost, incl. allocator slack.
    pub kib_per_stream: f64,
    /// Streams that reached the complete config, and how long each took from its start.
    pub synced: usize,
    pub sync: Latency,
    /// From the first connect until the last stream was synced, ms.
    pub sync_wall_ms: f64,
    /// From the first connect until the last connection was up, ms.
    pub connect_wall_ms: f64,
    /// Bytes received by all streams until all were synced.
    pub sync_bytes: u64,
    /// CPU used from the first connect until all were synced.
    pub sync_cpu: CpuSplit,
    /// CPU used per change (the changes' total, pauses included, divided by their number).
    pub change_cpu: CpuSplit,
    pub changes: Vec<ChangeReport>,
    /// Change -> ACK over every stream and change.
    pub change_ack: Latency,
    /// Per change, the time until the last stream ACKed it ("change -> all ACKed").
    pub change_all_acked: Latency,
    /// Streams that ended with an error, and the first errors.
    pub failed: usize,
    pub errors: Vec<String>,
}

/// One config change.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChangeReport {
    pub acked: usize,
    pub latency: Latency,
    /// Bytes received by all streams from the change until all ACKed (or the deadline).
    pub bytes: u64,
}

impl Report {
    /// Whether every stream synced and ACKed every change.
    pub fn complete(&self) -> bool {
        self.failed == 0
            && self.synced == self.streams
            && self.changes.iter().all(|c| c.acked == self.streams)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |m: &Memory| {
            format!(
                "{:.1} MiB (peak {:.1} MiB)",
                m.mib(),
                m.hwm_kib as f64 / 1024.0
            )
        };
        let per_change = if self.changes.is_empty() {
            0
        } else {
            self.changes.iter().map(|c| c.bytes).sum::<u64>() / self.changes.len() as u64
        };
        writeln!(f, "| metric | value |")?;
        writeln!(f, "|---|---|")?;
        writeln!(
            f,
            "| setup | {} streams ({}), {} routes, {} backends |",
            self.streams, self.variant, self.routes, self.backends
        )?;
        writeln!(
            f,
            "| streams synced | {} of {} ({} failed) |",
            self.synced, self.streams, self.failed
        )?;
        writeln!(
            f,
            "| full config to all streams (wall) | {:.1} ms (all connected after {:.1} ms) |",
            self.sync_wall_ms, self.connect_wall_ms
        )?;
        writeln!(f, "| per-stream initial sync | {} |", self.sync)?;
        writeln!(f, "| CPU, initial sync | {} |", self.sync_cpu)?;
        writeln!(
            f,
            "| bytes sent, initial sync | {} ({:.1} KiB/stream) |",
            self.sync_bytes,
            self.sync_bytes as f64 / 1024.0 / self.streams.max(1) as f64
        )?;
        writeln!(f, "| changes | {} |", self.changes.len())?;
        writeln!(f, "| change -> ACK, every stream | {} |", self.change_ack)?;
        writeln!(
            f,
            "| change -> all ACKed, per change | {} |",
            self.change_all_acked
        )?;
        writeln!(f, "| CPU per change | {} |", self.change_cpu)?;
        writeln!(
            f,
            "| bytes sent per change | {per_change} ({:.1} KiB/stream) |",
            per_change as f64 / 1024.0 / self.streams.max(1) as f64
        )?;
        writeln!(
            f,
            "| portico RSS before streams | {} |",
            mib(&self.rss_before)
        )?;
        writeln!(f, "| portico RSS, all synced | {} |", mib(&self.rss_synced))?;
        writeln!(
            f,
            "| portico RSS after changes | {} |",
            mib(&self.rss_after)
        )?;
        writeln!(f, "| memory per stream | {:.1} KiB |", self.kib_per_stream)?;
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::of(&samples);
        assert_eq!(
            (l.count, l.p50_ms, l.p99_ms, l.max_ms),
            (100, 50.0, 99.0, 100.0)
        );
        assert_eq!(Latency::of(&[]), Latency::default());
        assert_eq!(Latency::of(&[Duration::from_millis(7)]).p99_ms, 7.0);
    }

    #[test]
    fn reads_own_memory() {
        let m = Memory::of(std::process::id()).expect("/proc/self/status");
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib);
    }

    #[test]
    fn reads_own_cpu_time() {
        let before = CpuTime::of(std::process::id()).expect("/proc/self/stat");
        // Burn a little CPU until the clock-tick counter moves (other tests' threads may
        // move it first: the loop ending is the check).
        let mut x = 0u64;
        while CpuTime::of(std::process::id()).expect("stat").since(before) <= 0.0 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(x);
    }
}
