//! The process's own metrics, named as the Prometheus client libraries name them (`process_*`) so the usual
//! dashboards and alerts apply, read from `/proc/self` at scrape time; and `dukasync_build_info`.
//!
//! On a system without `/proc` (not Linux) the `process_*` families are left out, never reported as 0.

use super::render_counter;
use super::render_gauge;
use std::fs;

/// The ticks per second of `/proc`'s times (`USER_HZ`): 100 on every Linux architecture, whatever the kernel's
/// own tick rate; Prometheus's `procfs` assumes the same.
const USER_HZ: f64 = 100.0;

/// The commit the binary was built from (`build.rs`: `DUKASYNC_COMMIT` at build time, else `git rev-parse`,
/// else "unknown").
pub const COMMIT: &str = env!("DUKASYNC_COMMIT");

/// The process's figures, each `None` when it could not be read.
#[derive(Debug, Default, PartialEq)]
pub struct Process {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
}

impl Process {
    /// Reads `/proc/self` (and `/proc/stat` for the boot time).
    pub fn read() -> Process {
        let text = |path: &str| fs::read_to_string(path).ok();
        let stat = text("/proc/self/stat").and_then(|s| Stat::parse(&s));
        let boot = text("/proc/stat").and_then(|s| boot_time(&s));
        Process {
            cpu_seconds: stat.as_ref().map(|s| (s.utime + s.stime) as f64 / USER_HZ),
            resident_bytes: text("/proc/self/status").and_then(|s| resident_bytes(&s)),
            virtual_bytes: stat.as_ref().map(|s| s.vsize as f64),
            start_time_seconds: stat
                .as_ref()
                .zip(boot)
                .map(|(s, boot)| boot as f64 + s.starttime as f64 / USER_HZ),
            open_fds: fs::read_dir("/proc/self/fd").ok().map(|dir| dir.count() as f64),
            max_fds: text("/proc/self/limits").and_then(|s| max_open_files(&s)),
        }
    }

    /// Appends the `process_*` families that were read.
    pub fn render(&self, out: &mut String) {
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                self.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                self.virtual_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                self.start_time_seconds,
            ),
            ("process_open_fds", "Number of open file descriptors.", self.open_fds),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (the soft limit).",
                self.max_fds,
            ),
        ];
        if let Some(cpu) = self.cpu_seconds {
            render_counter(
                out,
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                &[(String::new(), cpu)],
            );
        }
        for (name, help, value) in gauges {
            if let Some(value) = value {
                render_gauge(out, name, help, &[(String::new(), value)]);
            }
        }
    }
}

/// `dukasync_build_info{version, commit} 1`.
pub fn render_build_info(out: &mut String) {
    render_gauge(
        out,
        "dukasync_build_info",
        "The running build: its version (Cargo.toml) and the commit it was built from; always 1.",
        &[(
            format!(
                "version=\"{}\",commit=\"{}\"",
                super::escape(env!("CARGO_PKG_VERSION")),
                super::escape(COMMIT)
            ),
            1.0,
        )],
    )
}

/// The fields of `/proc/self/stat` used here (proc(5)).
#[derive(Debug, PartialEq)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
}

impl Stat {
    fn parse(stat: &str) -> Option<Stat> {
        // The command name (field 2) is in parentheses and may hold spaces and parentheses itself: the fields
        // that follow start after the last `)`, with field 3 (`state`).
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Stat {
            utime: field(14)?,
            stime: field(15)?,
            starttime: field(22)?,
            vsize: field(23)?,
        })
    }
}

/// `VmRSS` of `/proc/self/status`, in bytes (the file says kB).
fn resident_bytes(status: &str) -> Option<f64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024.0)
}

/// `btime` of `/proc/stat`: the boot time, in seconds since the epoch.
fn boot_time(stat: &str) -> Option<u64> {
    let line = stat.lines().find_map(|l| l.strip_prefix("btime "))?;
    line.trim().parse().ok()
}

/// The soft limit of "Max open files" in `/proc/self/limits`; `None` when unlimited.
fn max_open_files(limits: &str) -> Option<f64> {
    let line = limits.lines().find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_last_parenthesis() {
        // A command name with a space and a parenthesis, then fields 3 to 24 (proc(5)).
        let stat = "4242 (duka sync) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 75 0 0 20 0 9 0 12345 1073741824 5000 18446744073709551615";
        assert_eq!(
            Stat::parse(stat),
            Some(Stat {
                utime: 250,
                stime: 75,
                starttime: 12345,
                vsize: 1_073_741_824
            })
        );
        assert_eq!(Stat::parse("4242 (cut short) S 1 2"), None);
    }

    #[test]
    fn status_limits_and_boot_time_are_parsed() {
        let status = "Name:\tdukasync\nVmSize:\t  1048576 kB\nVmRSS:\t    20480 kB\nThreads:\t9\n";
        assert_eq!(resident_bytes(status), Some(20480.0 * 1024.0));
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63429                63429                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        let unlimited = "Max open files            unlimited            unlimited            files     \n";
        assert_eq!(max_open_files(unlimited), None);
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1764800000\nprocesses 9\n"),
            Some(1_764_800_000)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_read_on_linux() {
        let process = Process::read();
        assert!(process.resident_bytes.is_some_and(|b| b > 1_000_000.0), "{process:?}");
        assert!(process.virtual_bytes >= process.resident_bytes, "{process:?}");
        assert!(process.open_fds.is_some_and(|n| n >= 3.0), "{process:?}");
        assert!(process.max_fds >= process.open_fds, "{process:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Started within the last day (the test binary just started), and not in the future.
        assert!(
            process
                .start_time_seconds
                .is_some_and(|t| t <= now + 1.0 && t > now - 86_400.0),
            "{process:?}"
        );
        assert!(process.cpu_seconds.is_some(), "{process:?}");
    }
}
