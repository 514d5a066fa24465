//! `GET /metrics`: Prometheus text of the engine and the node.

use std::sync::atomic::Ordering::Relaxed;

use crate::node::Node;

impl Node {
    /// Prometheus text: engine stats and node counters.
    pub fn metrics(&self) -> String {
        let s = self.inner.engine.stats();
        let mut out = String::new();
        let mut line = |name: &str, help: &str, kind: &str, v: u64| {
            out.push_str(&format!(
                "# HELP ao_cu_{name} {help}\n# TYPE ao_cu_{name} {kind}\nao_cu_{name} {v}\n"
            ));
        };
        line(
            "resident_processes",
            "Processes resident in memory.",
            "gauge",
            s.resident_processes,
        );
        line(
            "resident_bytes",
            "Bytes of resident process memory.",
            "gauge",
            s.resident_bytes,
        );
        line("evaluations_total", "Messages evaluated.", "counter", s.evaluated);
        line("dry_runs_total", "Dry-runs evaluated.", "counter", s.dry_runs);
        line(
            "checkpoint_bases_total",
            "Base checkpoints written.",
            "counter",
            s.bases,
        );
        line(
            "checkpoint_deltas_total",
            "Delta checkpoints written.",
            "counter",
            s.deltas,
        );
        line(
            "checkpoint_bytes_total",
            "Checkpoint bytes written.",
            "counter",
            s.checkpoint_bytes,
        );
        line("evictions_total", "Processes evicted.", "counter", s.evictions);
        line(
            "restores_total",
            "Processes restored from checkpoints.",
            "counter",
            s.restores,
        );
        line("boots_total", "Processes booted.", "counter", s.boots);
        line(
            "ingested_total",
            "Data items ingested.",
            "counter",
            self.inner.ingested.load(Relaxed),
        );
        line(
            "forwarded_items_total",
            "Data items the MU handed to a remote SU (network mode).",
            "counter",
            self.inner.forwarded.load(Relaxed),
        );
        if self.clustered() {
            line(
                "cluster_owned_processes",
                "Processes whose lease this node holds (cluster mode).",
                "gauge",
                self.owned_processes().len() as u64,
            );
            line(
                "cluster_takeovers_total",
                "Process leases this node took from another node or took back (cluster mode).",
                "counter",
                self.cluster_moves(),
            );
        }
        line(
            "uploaded_items_total",
            "Data items stored through the bundler surface (POST /tx).",
            "counter",
            self.inner.uploaded.load(Relaxed),
        );
        for (name, help, value) in self.checkpoint_stats() {
            line(name, help, "counter", value);
        }
        if let Some((pages, slots, failures)) = self.network_stats() {
            line(
                "upstream_pages_total",
                "SU pages read (network mode).",
                "counter",
                pages,
            );
            line(
                "upstream_slots_total",
                "Remote slots checked and appended.",
                "counter",
                slots,
            );
            line(
                "upstream_failures_total",
                "Upstream syncs that failed.",
                "counter",
                failures,
            );
        }
        out
    }
}
