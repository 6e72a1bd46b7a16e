//! Prometheus metrics, kept per server instance (so tests running several apps in one process stay apart).
//!
//! Request counts and latency histograms by route template, method and status; long-polls that waited in a
//! histogram of their own, by how the wait ended (so a 25 s wait never lands among the request latencies);
//! counters whose label values are `&'static str` ([`StaticCounter`]: only values written in the code can
//! appear, so their series stay bounded). Gauges are gathered at scrape time (`state::AppState::render_metrics`,
//! [`process`]).

pub mod process;

use std::{collections::BTreeMap, fmt::Write, sync::Mutex, time::Duration};

/// Upper bounds of the request latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds of the long-poll duration buckets, in seconds: a wait lasts up to `DUKASYNC_MAX_WAIT_SECS`
/// (30 by default, 300 at most).
const LONGPOLL_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 60.0, 120.0, 300.0,
];

struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    fn observe(&mut self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bucket, bound) in self.buckets.iter_mut().zip(self.bounds) {
            if secs <= *bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    /// Its `_bucket`, `_sum` and `_count` samples; `labels` are the series' own, before `le`.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {bucket}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// One (route, method, status) series: every request counts; only those that did not long-poll are timed.
struct Answers {
    requests: u64,
    latency: Histogram,
}

/// Series by route template, then by (method, status): looked up by `&str` so that recording a request
/// allocates nothing once its labels were seen (a route has a handful of method and status pairs).
type ByRoute = BTreeMap<String, Vec<(String, u16, Answers)>>;

#[derive(Default)]
pub struct Metrics {
    http: Mutex<ByRoute>,
    /// Long-polls that waited, by how the wait ended (`feed::longpoll::Waited`).
    longpolls: Mutex<BTreeMap<&'static str, Histogram>>,
}

impl Metrics {
    /// Counts a request and records its latency.
    pub fn observe_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.record(route, method, status, Some(elapsed));
    }

    /// Counts a request that long-polled, and records how long it waited in the long-poll histogram (by
    /// `outcome`) instead of the request latencies, whose percentiles it would wreck.
    pub fn observe_longpoll(&self, route: &str, method: &str, status: u16, outcome: &'static str, elapsed: Duration) {
        self.record(route, method, status, None);
        let mut longpolls = self.longpolls.lock().unwrap_or_else(|p| p.into_inner());
        longpolls
            .entry(outcome)
            .or_insert_with(|| Histogram::new(LONGPOLL_BUCKETS))
            .observe(elapsed);
    }

    fn record(&self, route: &str, method: &str, status: u16, elapsed: Option<Duration>) {
        let mut http = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if !http.contains_key(route) {
            http.insert(route.to_string(), Vec::new());
        }
        let by_answer = http.get_mut(route).expect("inserted above");
        let index = match by_answer.iter().position(|(m, s, _)| m == method && *s == status) {
            Some(index) => index,
            None => {
                let answers = Answers {
                    requests: 0,
                    latency: Histogram::new(BUCKETS),
                };
                by_answer.push((method.to_string(), status, answers));
                by_answer.len() - 1
            }
        };
        let answers = &mut by_answer[index].2;
        answers.requests += 1;
        if let Some(elapsed) = elapsed {
            answers.latency.observe(elapsed);
        }
    }

    /// The request and long-poll metrics in Prometheus text format, series sorted by their labels.
    pub fn render_http(&self, out: &mut String) {
        let http = self.http.lock().unwrap_or_else(|p| p.into_inner());
        let mut series: Vec<(&str, &str, u16, &Answers)> = http
            .iter()
            .flat_map(|(route, answers)| answers.iter().map(move |(m, s, a)| (route.as_str(), m.as_str(), *s, a)))
            .collect();
        series.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        out.push_str(
            "# HELP dukasync_http_requests_total HTTP requests by route, method and status, long-polls included.\n",
        );
        out.push_str("# TYPE dukasync_http_requests_total counter\n");
        for (route, method, status, answers) in &series {
            let _ = writeln!(
                out,
                "dukasync_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {}",
                escape(route),
                answers.requests
            );
        }
        out.push_str(
            "# HELP dukasync_http_request_duration_seconds HTTP request latency; long-polls that waited are in dukasync_longpoll_duration_seconds instead.\n",
        );
        out.push_str("# TYPE dukasync_http_request_duration_seconds histogram\n");
        for (route, method, status, answers) in &series {
            if answers.latency.count == 0 {
                continue;
            }
            let labels = format!("route=\"{}\",method=\"{method}\",status=\"{status}\"", escape(route));
            answers
                .latency
                .render(out, "dukasync_http_request_duration_seconds", &labels);
        }
        drop(http);
        out.push_str(
            "# HELP dukasync_longpoll_duration_seconds How long pulls that long-polled (parked to wait for a change) took, by how the wait ended.\n",
        );
        out.push_str("# TYPE dukasync_longpoll_duration_seconds histogram\n");
        let longpolls = self.longpolls.lock().unwrap_or_else(|p| p.into_inner());
        for (outcome, histogram) in longpolls.iter() {
            histogram.render(
                out,
                "dukasync_longpoll_duration_seconds",
                &format!("outcome=\"{outcome}\""),
            );
        }
    }
}

/// A counter family whose label values are `&'static str`: only values written in the code can appear, so its
/// series stay bounded whatever clients send.
pub struct StaticCounter<const N: usize> {
    names: [&'static str; N],
    counts: Mutex<BTreeMap<[&'static str; N], u64>>,
}

impl<const N: usize> StaticCounter<N> {
    /// A family with the label names `names`, and `zeros` series present at 0 from the start (so that a rate
    /// over them exists before their first event).
    pub fn new(names: [&'static str; N], zeros: &[[&'static str; N]]) -> Self {
        StaticCounter {
            names,
            counts: Mutex::new(zeros.iter().map(|labels| (*labels, 0)).collect()),
        }
    }

    pub fn add(&self, labels: [&'static str; N], n: u64) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(labels)
            .or_default() += n;
    }

    pub fn get(&self, labels: [&'static str; N]) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(&labels).copied().unwrap_or(0)
    }

    /// Appends the family, series in label order.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let samples: Vec<(String, f64)> = counts
            .iter()
            .map(|(values, count)| {
                let labels: Vec<String> = self
                    .names
                    .iter()
                    .zip(values)
                    .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
                    .collect();
                (labels.join(","), *count as f64)
            })
            .collect();
        render_counter(out, name, help, &samples);
    }
}

/// Appends one gauge family with its samples.
pub fn render_gauge(out: &mut String, name: &str, help: &str, samples: &[(String, f64)]) {
    render_family(out, "gauge", name, help, samples);
}

/// Appends one counter family with its samples.
pub fn render_counter(out: &mut String, name: &str, help: &str, samples: &[(String, f64)]) {
    render_family(out, "counter", name, help, samples);
}

fn render_family(out: &mut String, kind: &str, name: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

pub fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe_request("/x", "GET", 200, Duration::from_millis(3));
        m.observe_request("/x", "GET", 200, Duration::from_millis(300));
        let mut out = String::new();
        m.render_http(&mut out);
        assert!(
            out.contains("dukasync_http_requests_total{route=\"/x\",method=\"GET\",status=\"200\"} 2"),
            "{out}"
        );
        assert!(out.contains("le=\"0.005\"} 1"), "{out}");
        assert!(out.contains("le=\"0.5\"} 2"), "{out}");
    }

    #[test]
    fn a_long_poll_is_counted_but_timed_apart_by_outcome() {
        let m = Metrics::default();
        m.observe_request("/c", "GET", 200, Duration::from_millis(3));
        m.observe_longpoll("/c", "GET", 200, "change", Duration::from_secs(20));
        let mut out = String::new();
        m.render_http(&mut out);
        assert!(
            out.contains("dukasync_http_requests_total{route=\"/c\",method=\"GET\",status=\"200\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("dukasync_http_request_duration_seconds_count{route=\"/c\",method=\"GET\",status=\"200\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("dukasync_longpoll_duration_seconds_bucket{outcome=\"change\",le=\"15\"} 0"),
            "{out}"
        );
        assert!(
            out.contains("dukasync_longpoll_duration_seconds_bucket{outcome=\"change\",le=\"20\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("dukasync_longpoll_duration_seconds_count{outcome=\"change\"} 1"),
            "{out}"
        );
    }

    #[test]
    fn static_counters_render_their_zeros_and_counts_in_label_order() {
        let c = StaticCounter::new(["a", "b"], &[["y", "1"]]);
        c.add(["x", "2"], 3);
        let mut out = String::new();
        c.render(&mut out, "t_total", "Help.");
        assert_eq!(
            out,
            "# HELP t_total Help.\n# TYPE t_total counter\nt_total{a=\"x\",b=\"2\"} 3\nt_total{a=\"y\",b=\"1\"} 0\n"
        );
        assert_eq!(c.get(["x", "2"]), 3);
    }

    #[test]
    fn series_are_kept_apart_and_rendered_in_label_order() {
        let m = Metrics::default();
        m.observe_request("/y", "GET", 200, Duration::from_millis(1));
        m.observe_request("/x", "POST", 200, Duration::from_millis(1));
        m.observe_request("/x", "GET", 404, Duration::from_millis(1));
        m.observe_request("/x", "GET", 200, Duration::from_millis(1));
        m.observe_request("/x", "GET", 404, Duration::from_millis(1));
        let mut out = String::new();
        m.render_http(&mut out);
        let totals: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("dukasync_http_requests_total{"))
            .collect();
        assert_eq!(
            totals,
            [
                "dukasync_http_requests_total{route=\"/x\",method=\"GET\",status=\"200\"} 1",
                "dukasync_http_requests_total{route=\"/x\",method=\"GET\",status=\"404\"} 2",
                "dukasync_http_requests_total{route=\"/x\",method=\"POST\",status=\"200\"} 1",
                "dukasync_http_requests_total{route=\"/y\",method=\"GET\",status=\"200\"} 1",
            ]
        );
    }
}
