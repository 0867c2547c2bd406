//! What a load run measured: a latency histogram, the report of one run, and
//! its two renderings (a markdown table row and a JSON object, written by hand
//! so the crate needs no serialisation dependency).

use std::fmt::Write as _;

/// Latencies in 1 µs buckets up to [`Hist::SPAN_US`], and the exact maximum.
#[derive(Clone)]
pub struct Hist {
    buckets: Vec<u32>,
    count: u64,
    max_ns: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    /// Latencies above this many µs share the last bucket (the maximum stays exact).
    pub const SPAN_US: usize = 1 << 20;

    pub fn new() -> Self {
        Hist {
            buckets: vec![0; Self::SPAN_US + 1],
            count: 0,
            max_ns: 0,
        }
    }

    #[inline]
    pub fn add(&mut self, ns: u64) {
        let b = ((ns / 1000) as usize).min(Self::SPAN_US);
        self.buckets[b] = self.buckets[b].saturating_add(1);
        self.count += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a = a.saturating_add(*b);
        }
        self.count += other.count;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q` quantile (0..=1) in µs: the upper edge of its bucket, never above the maximum.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n as u64;
            if seen >= rank {
                return Some(((i + 1) as f64).min(self.max_us()));
            }
        }
        Some(self.max_us())
    }

    pub fn max_us(&self) -> f64 {
        self.max_ns as f64 / 1000.0
    }
}

/// p50, p99 and max of a latency distribution, in µs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Latency {
    pub fn of(h: &Hist) -> Option<Latency> {
        Some(Latency {
            p50_us: h.quantile_us(0.50)?,
            p99_us: h.quantile_us(0.99)?,
            max_us: h.max_us(),
        })
    }
}

/// Which kind of run a report describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The chat server relaying SAYs.
    Server,
    /// The kernel ceiling: a bare `sendmmsg` loop feeding the same sockets.
    Baseline,
    /// Members joined and idle, sending keepalives only.
    Idle,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::Baseline => "kernel ceiling",
            Kind::Idle => "idle",
        }
    }
}

/// Everything one run measured. Rates are per second of the measured span
/// (first send to last receipt).
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub kind: Option<Kind>,
    pub members: usize,
    pub senders: usize,
    /// "W=32", "flood" (within the ACK window), "idle"; a paced run adds its rate.
    /// Receiver threads are added when not the default 2.
    pub mode: String,
    /// Packing on or off (None for the kernel ceiling).
    pub packing: Option<bool>,
    /// Distinct messages sent, and retransmissions of unacknowledged ones.
    pub messages: u64,
    pub retransmits: u64,
    /// Deliveries expected (each message to every member but its sender) and received.
    pub expected: u64,
    pub delivered: u64,
    /// Datagrams that carried the deliveries.
    pub datagrams: u64,
    pub seconds: f64,
    /// Deliveries missing, and how many of them the members saw as gaps in
    /// their event numbers (or at the end, from PONG's last number).
    pub lost: u64,
    pub lost_seen: u64,
    pub members_with_loss: usize,
    /// Members whose gaps do not add up to what they lost.
    pub members_miscounted: usize,
    /// Events out of order or repeated, and events that were not this run's.
    pub out_of_order: u64,
    pub foreign: u64,
    /// Send to each receipt, and send to the last member's receipt of each message.
    pub latency: Option<Latency>,
    pub latency_last: Option<Latency>,
    /// Messages that did not reach every member (excluded from `latency_last`).
    pub incomplete_messages: u64,
    /// Times a closed-loop sender went ahead after waiting 50 ms (deliveries lost at the end of a burst).
    pub stalls: u64,
    /// Server CPU (user + system) over the measured span, ns, and its user part.
    pub server_cpu_ns: Option<u64>,
    pub server_user_ns: Option<u64>,
    /// The server's own count of datagrams it could not send (from its /stats).
    pub server_dropped_sends: Option<u64>,
    /// CPU of this tool's receiver threads and of its sender, ns.
    pub rx_cpu_ns: u64,
    pub tx_cpu_ns: u64,
    /// The whole machine's busy time over the span, in cores (0..=cores).
    pub machine_busy_cores: Option<f64>,
    /// CPU used by the rest of the machine (other processes) over the span, in
    /// cores: machine busy minus the server and this tool. A run with much
    /// of it was disturbed.
    pub others_cores: Option<f64>,
    /// The machine was still busy when the run started (waited in vain for it to be idle).
    pub started_busy: bool,
    /// The kernel ceiling measured in the same invocation (datagrams delivered/s).
    pub ceiling_dgrams_per_s: Option<f64>,
    /// Idle runs: time to join every member, the server's resident memory, and
    /// its CPU share while the members only send keepalives.
    pub join_seconds: Option<f64>,
    pub server_rss_kib: Option<u64>,
    pub idle_cpu_percent: Option<f64>,
    pub keepalives: u64,
}

impl Report {
    pub fn msgs_per_s(&self) -> f64 {
        per_s(self.delivered, self.seconds)
    }
    pub fn dgrams_per_s(&self) -> f64 {
        per_s(self.datagrams, self.seconds)
    }
    pub fn events_per_dgram(&self) -> f64 {
        if self.datagrams == 0 {
            0.0
        } else {
            self.delivered as f64 / self.datagrams as f64
        }
    }
    /// Is every lost delivery visible to its member as a gap?
    pub fn losses_visible(&self) -> bool {
        self.lost == self.lost_seen && self.members_miscounted == 0
    }
    /// Server CPU per delivered message, ns.
    pub fn server_ns_per_msg(&self) -> Option<f64> {
        let cpu = self.server_cpu_ns? as f64;
        (self.delivered > 0).then(|| cpu / self.delivered as f64)
    }
    /// CPU of what sent the deliveries (the server, or the ceiling's bare
    /// loop) per delivered message, ns.
    pub fn sending_ns_per_msg(&self) -> Option<f64> {
        match self.kind {
            Some(Kind::Baseline) => {
                (self.delivered > 0).then(|| self.tx_cpu_ns as f64 / self.delivered as f64)
            }
            _ => self.server_ns_per_msg(),
        }
    }
    /// CPU of what sent the deliveries, in cores.
    pub fn sending_cores(&self) -> Option<f64> {
        match self.kind {
            Some(Kind::Baseline) => Some(self.tx_cores()),
            _ => self.server_cores(),
        }
    }
    pub fn server_ns_per_dgram(&self) -> Option<f64> {
        let cpu = self.server_cpu_ns? as f64;
        (self.datagrams > 0).then(|| cpu / self.datagrams as f64)
    }
    /// Server CPU over the span, in cores.
    pub fn server_cores(&self) -> Option<f64> {
        let cpu = self.server_cpu_ns? as f64;
        (self.seconds > 0.0).then(|| cpu / 1e9 / self.seconds)
    }
    pub fn rx_cores(&self) -> f64 {
        if self.seconds > 0.0 {
            self.rx_cpu_ns as f64 / 1e9 / self.seconds
        } else {
            0.0
        }
    }
    pub fn tx_cores(&self) -> f64 {
        if self.seconds > 0.0 {
            self.tx_cpu_ns as f64 / 1e9 / self.seconds
        } else {
            0.0
        }
    }
    /// Datagrams delivered/s as a share of the ceiling measured in the same invocation.
    pub fn ceiling_share(&self) -> Option<f64> {
        let c = self.ceiling_dgrams_per_s?;
        (c > 0.0).then(|| self.dgrams_per_s() / c)
    }

    /// The label of the run in a table: what ran, its mode and packing.
    pub fn label(&self) -> String {
        let kind = self.kind.unwrap_or(Kind::Server);
        match (kind, self.packing) {
            (Kind::Server, Some(p)) => {
                format!("server, packing {}", if p { "on" } else { "off" })
            }
            _ => kind.name().to_string(),
        }
    }

    /// The header of the markdown table of relay runs.
    pub fn table_header() -> String {
        "| run | N | S | mode | msgs delivered/s | datagrams/s | events/datagram | of ceiling | loss (all seen as gaps?) | latency p50 / p99 / max µs | to last member p99 µs | sending µs/msg | sending cores | receivers cores | machine busy cores (others) |\n\
         |---|---:|---:|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|"
            .to_string()
    }

    /// This run as a row of [`Report::table_header`].
    pub fn table_row(&self) -> String {
        let lat = |l: &Option<Latency>| match l {
            Some(l) => format!("{:.0} / {:.0} / {:.0}", l.p50_us, l.p99_us, l.max_us),
            None => "-".into(),
        };
        let loss = if self.lost == 0 && self.out_of_order == 0 && self.losses_visible() {
            "0".to_string()
        } else {
            format!(
                "{} of {} ({:.2}%; {}){}",
                self.lost,
                self.expected,
                100.0 * self.lost as f64 / self.expected.max(1) as f64,
                if self.losses_visible() {
                    "all seen"
                } else {
                    "NOT all seen"
                },
                if self.out_of_order > 0 {
                    format!(", {} out of order", self.out_of_order)
                } else {
                    String::new()
                }
            )
        };
        format!(
            "| {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {:.2} | {} |",
            self.label(),
            self.members,
            self.senders,
            self.mode,
            si(self.msgs_per_s()),
            si(self.dgrams_per_s()),
            self.events_per_dgram(),
            self.ceiling_share()
                .map_or("-".into(), |s| format!("{:.0}%", 100.0 * s)),
            loss,
            lat(&self.latency),
            self.latency_last
                .map_or("-".into(), |l| format!("{:.0}", l.p99_us)),
            self.sending_ns_per_msg()
                .map_or("-".into(), |ns| format!("{:.2}", ns / 1000.0)),
            self.sending_cores()
                .map_or("-".into(), |c| format!("{c:.2}")),
            self.rx_cores(),
            match (self.machine_busy_cores, self.others_cores) {
                (Some(m), Some(o)) => format!(
                    "{m:.2} ({o:.2}){}",
                    if self.started_busy { " busy" } else { "" }
                ),
                (Some(m), None) => format!("{m:.2}"),
                _ => "-".into(),
            },
        )
    }

    /// The header of the markdown table of idle runs.
    pub fn idle_header() -> String {
        "| run | N | all joined in | server RSS | keepalives/s | server CPU while idle |\n|---|---:|---:|---:|---:|---:|"
            .to_string()
    }

    pub fn idle_row(&self) -> String {
        format!(
            "| idle | {} | {} | {} | {:.0} | {} |",
            self.members,
            self.join_seconds
                .map_or("-".into(), |s| format!("{s:.2} s")),
            self.server_rss_kib
                .map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
            per_s(self.keepalives, self.seconds),
            self.idle_cpu_percent
                .map_or("-".into(), |p| format!("{p:.2}% of a core")),
        )
    }

    /// This run as one JSON object.
    pub fn json(&self) -> String {
        let mut j = Json::default();
        j.str("kind", self.kind.unwrap_or(Kind::Server).name());
        j.num("members", self.members as f64);
        j.num("senders", self.senders as f64);
        j.str("mode", &self.mode);
        j.opt_bool("packing", self.packing);
        j.num("messages", self.messages as f64);
        j.num("retransmits", self.retransmits as f64);
        j.num("expected", self.expected as f64);
        j.num("delivered", self.delivered as f64);
        j.num("datagrams", self.datagrams as f64);
        j.num("seconds", self.seconds);
        j.num("msgs_per_s", self.msgs_per_s());
        j.num("datagrams_per_s", self.dgrams_per_s());
        j.num("events_per_datagram", self.events_per_dgram());
        j.num("lost", self.lost as f64);
        j.num("lost_seen_as_gaps", self.lost_seen as f64);
        j.bool("all_losses_seen", self.losses_visible());
        j.num("members_with_loss", self.members_with_loss as f64);
        j.num("members_miscounted", self.members_miscounted as f64);
        j.num("out_of_order", self.out_of_order as f64);
        j.num("foreign_events", self.foreign as f64);
        j.num("incomplete_messages", self.incomplete_messages as f64);
        j.num("stalls", self.stalls as f64);
        for (name, l) in [
            ("latency", &self.latency),
            ("latency_last", &self.latency_last),
        ] {
            j.opt(&format!("{name}_p50_us"), l.map(|l| l.p50_us));
            j.opt(&format!("{name}_p99_us"), l.map(|l| l.p99_us));
            j.opt(&format!("{name}_max_us"), l.map(|l| l.max_us));
        }
        j.opt("server_cpu_ns", self.server_cpu_ns.map(|v| v as f64));
        j.opt("server_user_ns", self.server_user_ns.map(|v| v as f64));
        j.opt("server_ns_per_msg", self.server_ns_per_msg());
        j.opt("server_ns_per_datagram", self.server_ns_per_dgram());
        j.opt("server_cores", self.server_cores());
        j.opt(
            "server_dropped_sends",
            self.server_dropped_sends.map(|v| v as f64),
        );
        j.num("receivers_cores", self.rx_cores());
        j.num("sender_cores", self.tx_cores());
        j.opt("machine_busy_cores", self.machine_busy_cores);
        j.opt("others_cores", self.others_cores);
        j.bool("started_busy", self.started_busy);
        j.opt("ceiling_datagrams_per_s", self.ceiling_dgrams_per_s);
        j.opt("of_ceiling", self.ceiling_share());
        j.opt("join_seconds", self.join_seconds);
        j.opt("server_rss_kib", self.server_rss_kib.map(|v| v as f64));
        j.opt("idle_cpu_percent", self.idle_cpu_percent);
        j.num("keepalives", self.keepalives as f64);
        j.finish()
    }
}

fn per_s(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// `1234567.0` as `1.23M`, `45600.0` as `45.6k`.
pub fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// A flat JSON object, built field by field.
#[derive(Default)]
struct Json {
    s: String,
}

impl Json {
    fn key(&mut self, k: &str) {
        self.s.push(if self.s.is_empty() { '{' } else { ',' });
        let _ = write!(self.s, "\"{k}\":");
    }
    fn num(&mut self, k: &str, v: f64) {
        self.key(k);
        if !v.is_finite() {
            self.s.push_str("null");
        } else if v.fract() == 0.0 && v.abs() < 1e15 {
            let _ = write!(self.s, "{}", v as i64);
        } else {
            let _ = write!(self.s, "{}", (v * 1e6).round() / 1e6);
        }
    }
    fn opt(&mut self, k: &str, v: Option<f64>) {
        match v {
            Some(v) => self.num(k, v),
            None => self.null(k),
        }
    }
    fn null(&mut self, k: &str) {
        self.key(k);
        self.s.push_str("null");
    }
    fn bool(&mut self, k: &str, v: bool) {
        self.key(k);
        self.s.push_str(if v { "true" } else { "false" });
    }
    fn opt_bool(&mut self, k: &str, v: Option<bool>) {
        match v {
            Some(v) => self.bool(k, v),
            None => self.null(k),
        }
    }
    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        self.s.push('"');
        for c in v.chars() {
            match c {
                '"' => self.s.push_str("\\\""),
                '\\' => self.s.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.s, "\\u{:04x}", c as u32);
                }
                c => self.s.push(c),
            }
        }
        self.s.push('"');
    }
    fn finish(mut self) -> String {
        if self.s.is_empty() {
            self.s.push('{');
        }
        self.s.push('}');
        self.s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_edges_capped_by_the_max() {
        let mut h = Hist::new();
        for us in 1..=100u64 {
            h.add(us * 1000 + 500);
        }
        assert_eq!(h.quantile_us(0.5), Some(51.0));
        assert_eq!(h.quantile_us(0.99), Some(100.0));
        assert_eq!(h.max_us(), 100.5);
        assert_eq!(Hist::new().quantile_us(0.5), None);
    }

    #[test]
    fn json_is_one_flat_object() {
        let r = Report {
            kind: Some(Kind::Server),
            members: 3,
            mode: "W=32".into(),
            packing: Some(true),
            delivered: 10,
            datagrams: 5,
            seconds: 2.0,
            ..Default::default()
        };
        let j = r.json();
        assert!(j.starts_with("{\"kind\":\"server\",\"members\":3,"));
        assert!(j.contains("\"msgs_per_s\":5,"));
        assert!(j.contains("\"events_per_datagram\":2,"));
        assert!(j.contains("\"latency_p50_us\":null"));
        assert!(j.ends_with('}'));
    }
}
