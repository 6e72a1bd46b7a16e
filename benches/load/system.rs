//! What the machine was doing, and memory of the server, PostgreSQL and Redis, read from /proc.

use serde::Serialize;
use std::{fs, process::Command};

#[derive(Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub memory_mib: u64,
    pub kernel: String,
}

pub fn machine() -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let memory_mib = status_kib(&fs::read_to_string("/proc/meminfo").unwrap_or_default(), "MemTotal:") / 1024;
    Machine {
        cpu_model,
        cores,
        memory_mib,
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .into(),
    }
}

/// The machine's load: `uptime` and the busiest other processes (others compile on this machine).
#[derive(Serialize)]
pub struct Load {
    pub uptime: String,
    pub busiest: Vec<String>,
}

pub fn load() -> Load {
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let ps = run("ps", &["-eo", "pcpu,rss,comm", "--sort=-pcpu"]);
    Load {
        uptime: run("uptime", &[]).trim().into(),
        busiest: ps.lines().take(9).map(|l| l.trim().to_string()).collect(),
    }
}

/// A field in kB from a /proc status-style text.
fn status_kib(text: &str, field: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// (current, peak) resident set of a process in MiB.
pub fn rss_mib(pid: u32) -> (f64, f64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    (
        status_kib(&status, "VmRSS:") as f64 / 1024.0,
        status_kib(&status, "VmHWM:") as f64 / 1024.0,
    )
}

/// Resets the process's peak RSS (VmHWM) to its current RSS, so each scenario reports its own peak.
pub fn reset_peak(pid: u32) -> bool {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn pss_kib(pid: u32) -> u64 {
    status_kib(
        &fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default(),
        "Pss:",
    )
}

fn parent(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("PPid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// PostgreSQL's memory: the proportional set size (shared buffers counted once) of the postmaster and all
/// its children, found from one backend's pid. Returns (MiB, processes).
pub fn postgres_mib(backend_pid: u32) -> Option<(f64, usize)> {
    let postmaster = parent(backend_pid)?;
    let mut total = pss_kib(postmaster);
    let mut count = 1;
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if parent(pid) == Some(postmaster) {
            total += pss_kib(pid);
            count += 1;
        }
    }
    Some((total as f64 / 1024.0, count))
}

/// A number field of Redis `INFO`.
pub fn info_field(info: &str, field: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

/// CPU time (user + system) of a process so far, in milliseconds.
fn cpu_ms(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state; USER_HZ is 100.
    (ticks(11) + ticks(12)) * 10.0
}

/// PostgreSQL backends serving `database` (their process title names it), children of the postmaster.
fn backends_of(postmaster: u32, database: &str) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let needle = format!(" {database} ");
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent(*pid) == Some(postmaster))
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

/// CPU used by the server and by the bench database's PostgreSQL backends between two marks.
pub struct CpuMark {
    machine: (u64, u64),
    server: f64,
    backends: std::collections::HashMap<u32, f64>,
}

pub struct CpuProbe {
    pub server_pid: u32,
    pub postmaster: Option<u32>,
    pub database: String,
}

impl CpuProbe {
    pub fn new(server_pid: u32, backend_pid: u32, database: &str) -> Self {
        CpuProbe {
            server_pid,
            postmaster: parent(backend_pid),
            database: database.into(),
        }
    }

    pub fn mark(&self) -> CpuMark {
        let backends = self
            .postmaster
            .map(|pm| backends_of(pm, &self.database))
            .unwrap_or_default()
            .into_iter()
            .map(|pid| (pid, cpu_ms(pid)))
            .collect();
        CpuMark {
            machine: cpu_jiffies(),
            server: cpu_ms(self.server_pid),
            backends,
        }
    }

    /// (server ms, PostgreSQL ms, machine busy %) since `start`; backends that appeared since count from zero.
    pub fn since(&self, start: &CpuMark) -> (f64, f64, f64) {
        let now = self.mark();
        let pg = now
            .backends
            .iter()
            .map(|(pid, ms)| ms - start.backends.get(pid).copied().unwrap_or(0.0))
            .sum();
        let busy = now.machine.0.saturating_sub(start.machine.0) as f64;
        let total = now.machine.1.saturating_sub(start.machine.1).max(1) as f64;
        (now.server - start.server, pg, (busy / total * 1000.0).round() / 10.0)
    }
}

/// (busy, total) jiffies of all CPUs so far, from /proc/stat.
pub fn cpu_jiffies() -> (u64, u64) {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    // idle and iowait are the 4th and 5th values.
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total - idle, total)
}
