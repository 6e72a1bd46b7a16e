//! Prometheus metrics, kept per server instance (so tests running several apps in one process stay apart).
//!
//! Request counts and latency histograms by route template, method and status; gauges are gathered at scrape
//! time by `http::system::metrics`.

use std::{collections::BTreeMap, fmt::Write, sync::Mutex, time::Duration};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Histograms by route template, then by (method, status): looked up by `&str` so that recording a request
/// allocates nothing once its labels were seen (a route has a handful of method and status pairs).
type ByRoute = BTreeMap<String, Vec<(String, u16, Histogram)>>;

#[derive(Default)]
pub struct Metrics {
    http: Mutex<ByRoute>,
}

impl Metrics {
    pub fn observe_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut http = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if !http.contains_key(route) {
            http.insert(route.to_string(), Vec::new());
        }
        let by_answer = http.get_mut(route).expect("inserted above");
        let index = match by_answer.iter().position(|(m, s, _)| m == method && *s == status) {
            Some(index) => index,
            None => {
                by_answer.push((method.to_string(), status, Histogram::default()));
                by_answer.len() - 1
            }
        };
        let h = &mut by_answer[index].2;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The request metrics in Prometheus text format, series sorted by route, method and status.
    pub fn render_http(&self, out: &mut String) {
        let http = self.http.lock().unwrap_or_else(|p| p.into_inner());
        let mut series: Vec<(&str, &str, u16, &Histogram)> = http
            .iter()
            .flat_map(|(route, answers)| answers.iter().map(move |(m, s, h)| (route.as_str(), m.as_str(), *s, h)))
            .collect();
        series.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        out.push_str("# HELP dukasync_http_requests_total HTTP requests by route, method and status.\n");
        out.push_str("# TYPE dukasync_http_requests_total counter\n");
        for (route, method, status, h) in &series {
            let _ = writeln!(
                out,
                "dukasync_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {}",
                escape(route),
                h.count
            );
        }
        out.push_str("# HELP dukasync_http_request_duration_seconds HTTP request latency.\n");
        out.push_str("# TYPE dukasync_http_request_duration_seconds histogram\n");
        for (route, method, status, h) in &series {
            let labels = format!("route=\"{}\",method=\"{method}\",status=\"{status}\"", escape(route));
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "dukasync_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    h.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "dukasync_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "dukasync_http_request_duration_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(
                out,
                "dukasync_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
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
