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

/// CPU (user + system) of a process and of its children it has reaped so far (`cutime`, `cstime`), ms.
fn cpu_with_reaped_ms(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12) + ticks(13) + ticks(14)) * 10.0
}

/// CPU of a whole PostgreSQL cluster between two points: the postmaster, every child alive at either point
/// (backends, walwriter, checkpointer, autovacuum) and the children that exited meanwhile, which the postmaster
/// reaped into its `cutime`/`cstime` (pgbench's backends end before the run does). A child alive at the start
/// that exited meanwhile is reaped whole, so its CPU before the start is taken off again.
pub struct ClusterCpu {
    postmaster: u32,
    own: f64,
    children: std::collections::HashMap<u32, f64>,
}

impl ClusterCpu {
    pub fn mark(postmaster: u32) -> Self {
        ClusterCpu {
            postmaster,
            own: cpu_with_reaped_ms(postmaster),
            children: children(postmaster).into_iter().map(|p| (p, cpu_ms(p))).collect(),
        }
    }

    /// The cluster's CPU since the mark, ms.
    pub fn since(&self) -> f64 {
        let now = ClusterCpu::mark(self.postmaster);
        let mut total = now.own - self.own;
        for (pid, ms) in &now.children {
            total += ms - self.children.get(pid).copied().unwrap_or(0.0);
        }
        for (pid, ms) in &self.children {
            if !now.children.contains_key(pid) {
                total -= ms;
            }
        }
        total
    }
}

/// How busy all CPUs were since `start` (from [`cpu_jiffies`]), percent.
pub fn busy_pct_since(start: (u64, u64)) -> f64 {
    let now = cpu_jiffies();
    let busy = now.0.saturating_sub(start.0) as f64;
    let total = now.1.saturating_sub(start.1).max(1) as f64;
    (busy / total * 1000.0).round() / 10.0
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

/// Resident memory of a process tree (the process and all its descendants), from `smaps`: RSS counts
/// shared memory (PostgreSQL's shared_buffers) in every process that touched it, PSS shares it out among the
/// processes that map it now. Pages of shared memory that only exited processes had touched are in neither:
/// see `shared_segment_mib`.
#[derive(Clone, Copy, Default, Serialize)]
pub struct TreeMemory {
    pub processes: usize,
    pub rss_mib: f64,
    pub pss_mib: f64,
    /// The part of the PSS that maps PostgreSQL's shared segments (`is_shared_segment`).
    pub pss_segment_mib: f64,
}

pub fn tree_memory(root: u32) -> Option<TreeMemory> {
    fs::metadata(format!("/proc/{root}")).ok()?;
    let mut pending = vec![root];
    let (mut rss, mut pss, mut segment, mut processes) = (0u64, 0u64, 0u64, 0usize);
    while let Some(pid) = pending.pop() {
        let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
        let mut in_segment = false;
        for line in smaps.lines() {
            let mut fields = line.split_whitespace();
            let first = fields.next().unwrap_or("");
            let mut kib = || fields.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            match first {
                "Rss:" => rss += kib(),
                "Pss:" => {
                    let k = kib();
                    pss += k;
                    if in_segment {
                        segment += k;
                    }
                }
                // A mapping's header ("start-end perms offset dev inode [path]"); other lines are "Name: value".
                _ if !first.ends_with(':') => in_segment = is_shared_segment(line),
                _ => {}
            }
        }
        processes += 1;
        pending.extend(children(pid));
    }
    Some(TreeMemory {
        processes,
        rss_mib: rss as f64 / 1024.0,
        pss_mib: pss as f64 / 1024.0,
        pss_segment_mib: segment as f64 / 1024.0,
    })
}

/// Whether a `maps`/`smaps` header line is one of PostgreSQL's shared segments: the main one (an anonymous
/// shared mapping, shown as `/dev/zero (deleted)`) or the small System V one.
fn is_shared_segment(header: &str) -> bool {
    let fields: Vec<&str> = header.split_whitespace().collect();
    let shared = fields
        .get(1)
        .is_some_and(|perms| perms.len() == 4 && perms.ends_with('s'));
    let path = fields.get(5..).map(|p| p.join(" ")).unwrap_or_default();
    shared && (path == "/dev/zero (deleted)" || path.starts_with("/SYSV"))
}

/// Resident size of PostgreSQL's shared memory (the main segment with shared_buffers, an anonymous shared
/// mapping shown as `/dev/zero (deleted)`, and the small System V one), MiB: the blocks its shmem file holds,
/// whether or not a live process maps them (a page a finished backend read into shared_buffers stays). Read
/// through `/proc/PID/map_files`, which needs root (CAP_SYS_ADMIN); `None` otherwise.
pub fn shared_segment_mib(postmaster: u32) -> Option<f64> {
    use std::os::unix::fs::MetadataExt;
    let maps = fs::read_to_string(format!("/proc/{postmaster}/maps")).ok()?;
    let mut bytes = 0u64;
    let mut found = false;
    for line in maps.lines().filter(|l| is_shared_segment(l)) {
        let range = line.split_whitespace().next()?;
        let meta = fs::metadata(format!("/proc/{postmaster}/map_files/{range}")).ok()?;
        bytes += meta.blocks() * 512;
        found = true;
    }
    found.then(|| bytes as f64 / 1048576.0)
}

/// Direct children of a process (from every thread's `children` list).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The postmaster of the cluster a backend belongs to.
pub fn postmaster_of(backend_pid: u32) -> Option<u32> {
    parent(backend_pid)
}

/// The largest memory one phase of the run (a scenario, the data load, a reference) showed in its samples.
#[derive(Clone, Default, Serialize)]
pub struct PhaseMemory {
    pub phase: String,
    pub samples: u32,
    /// The server's largest sampled RSS (the scenarios also report its exact peak, VmHWM).
    pub server_rss_mib: f64,
    pub postgres_processes: usize,
    pub postgres_rss_mib: f64,
    pub postgres_pss_mib: f64,
    /// What the cluster occupies: its processes' PSS plus the pages of its shared segments that no live
    /// process maps (`shared_segment_mib` minus the segments' PSS). At least the PSS; `None` without root.
    pub postgres_resident_mib: Option<f64>,
    /// The shared segment's resident size alone (shared_buffers, WAL buffers, locks): the rest is private.
    pub postgres_shared_segment_mib: Option<f64>,
    pub redis_rss_mib: f64,
    pub redis_pss_mib: f64,
    /// Largest sum, within one sample, of server RSS + PostgreSQL resident (PSS where that is unknown) + Redis
    /// RSS: the stack at one moment.
    pub stack_mib: f64,
}

impl PhaseMemory {
    fn add(&mut self, server: f64, pg: Option<TreeMemory>, segment: Option<f64>, redis: Option<TreeMemory>) {
        let pg = pg.unwrap_or_default();
        let redis = redis.unwrap_or_default();
        // PSS, plus the segments' pages no live process maps (the mapped ones' shares are in the PSS).
        let resident = segment.map(|s| pg.pss_mib + (s - pg.pss_segment_mib).max(0.0));
        self.samples += 1;
        self.server_rss_mib = self.server_rss_mib.max(server);
        self.postgres_processes = self.postgres_processes.max(pg.processes);
        self.postgres_rss_mib = self.postgres_rss_mib.max(pg.rss_mib);
        self.postgres_pss_mib = self.postgres_pss_mib.max(pg.pss_mib);
        self.postgres_resident_mib = max_opt(self.postgres_resident_mib, resident);
        self.postgres_shared_segment_mib = max_opt(self.postgres_shared_segment_mib, segment);
        self.redis_rss_mib = self.redis_rss_mib.max(redis.rss_mib);
        self.redis_pss_mib = self.redis_pss_mib.max(redis.pss_mib);
        let stack = server + resident.unwrap_or(pg.pss_mib) + redis.rss_mib;
        self.stack_mib = self.stack_mib.max(stack);
    }

    /// PostgreSQL's figure for the budget: resident where known, else PSS.
    pub fn postgres_mib(&self) -> f64 {
        self.postgres_resident_mib.unwrap_or(self.postgres_pss_mib)
    }

    /// The largest of each figure over several phases (the stack: largest of the per-sample sums).
    pub fn max_of<'a>(phase: &str, all: impl IntoIterator<Item = &'a PhaseMemory>) -> PhaseMemory {
        let mut m = PhaseMemory {
            phase: phase.into(),
            ..Default::default()
        };
        for p in all {
            m.samples += p.samples;
            m.server_rss_mib = m.server_rss_mib.max(p.server_rss_mib);
            m.postgres_processes = m.postgres_processes.max(p.postgres_processes);
            m.postgres_rss_mib = m.postgres_rss_mib.max(p.postgres_rss_mib);
            m.postgres_pss_mib = m.postgres_pss_mib.max(p.postgres_pss_mib);
            m.postgres_resident_mib = max_opt(m.postgres_resident_mib, p.postgres_resident_mib);
            m.postgres_shared_segment_mib = max_opt(m.postgres_shared_segment_mib, p.postgres_shared_segment_mib);
            m.redis_rss_mib = m.redis_rss_mib.max(p.redis_rss_mib);
            m.redis_pss_mib = m.redis_pss_mib.max(p.redis_pss_mib);
            m.stack_mib = m.stack_mib.max(p.stack_mib);
        }
        m
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Samples the memory of the server, the PostgreSQL tree (from its postmaster) and the Redis tree on a thread
/// of its own, every `SAMPLE_EVERY`, and keeps each phase's largest figures. The phase is whatever the run
/// set last ("load", a scenario's name, "pgbench").
pub struct MemorySampler {
    shared: std::sync::Arc<SamplerState>,
}

pub const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Default)]
struct SamplerState {
    server_pid: std::sync::atomic::AtomicU32,
    stop: std::sync::atomic::AtomicBool,
    /// Every phase so far, and the index of the current one.
    phases: std::sync::Mutex<(Vec<PhaseMemory>, usize)>,
}

impl MemorySampler {
    pub fn start(postmaster: Option<u32>, redis: Option<u32>) -> Self {
        use std::sync::atomic::Ordering;
        let shared = std::sync::Arc::new(SamplerState::default());
        let state = shared.clone();
        std::thread::spawn(move || {
            while !state.stop.load(Ordering::Relaxed) {
                let server = match state.server_pid.load(Ordering::Relaxed) {
                    0 => 0.0,
                    pid => rss_mib(pid).0,
                };
                let pg = postmaster.and_then(tree_memory);
                let segment = postmaster.and_then(shared_segment_mib);
                let rd = redis.and_then(tree_memory);
                let mut phases = state.phases.lock().unwrap();
                let (all, current) = &mut *phases;
                if let Some(phase) = all.get_mut(*current) {
                    phase.add(server, pg, segment, rd);
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
        MemorySampler { shared }
    }

    pub fn set_server(&self, pid: u32) {
        self.shared.server_pid.store(pid, std::sync::atomic::Ordering::Relaxed);
    }

    /// From now on, samples count for the phase `name` (a phase already seen continues where it was).
    pub fn phase(&self, name: &str) {
        let mut phases = self.shared.phases.lock().unwrap();
        let (all, current) = &mut *phases;
        *current = match all.iter().position(|p| p.phase == name) {
            Some(i) => i,
            None => {
                all.push(PhaseMemory {
                    phase: name.into(),
                    ..Default::default()
                });
                all.len() - 1
            }
        };
    }

    /// Stops sampling (the thread ends after its current sample); every phase's largest figures, in order.
    pub fn finish(&self) -> Vec<PhaseMemory> {
        self.shared.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        std::mem::take(&mut self.shared.phases.lock().unwrap().0)
    }
}
