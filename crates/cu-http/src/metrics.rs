//! HTTP request metrics in Prometheus text format (`ao_cu_http_request_duration_seconds`, a histogram
//! labelled by method, route and status, as the reference names it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Histogram bucket bounds (seconds). The reference's (0.5 s and up) are too coarse for this server.
const BUCKETS: [f64; 9] = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

#[derive(Default)]
struct Series {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Request durations by (method, route, status).
#[derive(Default)]
pub(crate) struct HttpMetrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl HttpMetrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let s = series
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        s.count += 1;
        s.sum += secs;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                s.buckets[i] += 1;
            }
        }
    }

    /// Appends the series to `out`.
    pub fn render(&self, out: &mut String) {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let name = "ao_cu_http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP request duration by method, route and status."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        for ((method, route, status), s) in series.iter() {
            let group = format!("{}xx", status / 100);
            let labels = format!(
                "method=\"{method}\",route=\"{}\",status=\"{status}\",statusGroup=\"{group}\"",
                escape(route)
            );
            for (bound, n) in BUCKETS.iter().zip(s.buckets.iter()) {
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", s.sum);
            let _ = writeln!(out, "{name}_count{{{labels}}} {}", s.count);
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_buckets() {
        let m = HttpMetrics::default();
        m.observe("GET", "/result/{id}", 200, Duration::from_micros(700));
        m.observe("GET", "/result/{id}", 200, Duration::from_millis(20));
        let mut out = String::new();
        m.render(&mut out);
        let labels = "method=\"GET\",route=\"/result/{id}\",status=\"200\",statusGroup=\"2xx\"";
        assert!(out.contains(&format!(
            "ao_cu_http_request_duration_seconds_bucket{{{labels},le=\"0.0005\"}} 0"
        )));
        assert!(out.contains(&format!(
            "ao_cu_http_request_duration_seconds_bucket{{{labels},le=\"0.001\"}} 1"
        )));
        assert!(out.contains(&format!(
            "ao_cu_http_request_duration_seconds_bucket{{{labels},le=\"0.05\"}} 2"
        )));
        assert!(out.contains(&format!(
            "ao_cu_http_request_duration_seconds_count{{{labels}}} 2"
        )));
    }
}
