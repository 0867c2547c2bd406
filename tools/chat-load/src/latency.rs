//! Latency distributions: a histogram with 1 µs buckets up to a second and
//! relative ones beyond, and its p50 / p99 / max.

/// Latencies in 1 µs buckets up to [`Hist::SPAN_US`], then in buckets 1/1024
/// of their value wide (so a quantile above a second is within 0.1%), and
/// the exact maximum.
#[derive(Clone)]
pub struct Hist {
    buckets: Vec<u32>,
    count: u64,
    max_ns: u64,
}

/// Sub-buckets per power of two above [`Hist::SPAN_US`].
const SUB: u64 = 1024;
/// log2 of [`Hist::SPAN_US`].
const SPAN_BITS: u32 = 20;

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    /// Latencies below this many µs have 1 µs buckets.
    pub const SPAN_US: usize = 1 << SPAN_BITS;

    /// An empty histogram.
    pub fn new() -> Self {
        let powers = (64 - SPAN_BITS) as usize;
        Hist {
            buckets: vec![0; Self::SPAN_US + powers * SUB as usize],
            count: 0,
            max_ns: 0,
        }
    }

    /// The bucket of a latency of `us` µs.
    fn bucket(us: u64) -> usize {
        if us < Self::SPAN_US as u64 {
            return us as usize;
        }
        // us = m << shift + rest, with m in SUB..2 * SUB.
        let shift = 63 - us.leading_zeros() - SUB.trailing_zeros();
        let m = us >> shift;
        let tier = (shift - (SPAN_BITS - SUB.trailing_zeros())) as u64;
        Self::SPAN_US + (tier * SUB + m - SUB) as usize
    }

    /// The upper edge (µs, exclusive) of bucket `b`.
    fn upper_edge(b: usize) -> f64 {
        if b < Self::SPAN_US {
            return (b + 1) as f64;
        }
        let k = (b - Self::SPAN_US) as u64;
        let shift = k / SUB + (SPAN_BITS - SUB.trailing_zeros()) as u64;
        let m = k % SUB + SUB;
        ((m + 1) as f64) * (1u64 << shift) as f64
    }

    /// Counts one latency.
    #[inline]
    pub fn add(&mut self, ns: u64) {
        let b = Self::bucket(ns / 1000);
        self.buckets[b] = self.buckets[b].saturating_add(1);
        self.count += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a = a.saturating_add(*b);
        }
        self.count += other.count;
        self.max_ns = self.max_ns.max(other.max_ns);
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
                return Some(Self::upper_edge(i).min(self.max_us()));
            }
        }
        Some(self.max_us())
    }

    /// The largest latency, µs.
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
    /// The figures of `h`; None when it is empty.
    pub fn of(h: &Hist) -> Option<Latency> {
        Some(Latency {
            p50_us: h.quantile_us(0.50)?,
            p99_us: h.quantile_us(0.99)?,
            max_us: h.max_us(),
        })
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
    fn latencies_above_a_second_are_measured_not_clamped() {
        let mut h = Hist::new();
        for ms in [2_000u64, 3_000, 5_000] {
            h.add(ms * 1_000_000);
        }
        let p50 = h.quantile_us(0.5).unwrap();
        assert!((3_000_000.0..=3_003_000.0).contains(&p50), "{p50}");
        assert_eq!(h.quantile_us(1.0), Some(5_000_000.0));
        let mut one = Hist::new();
        one.add(1_500_000_000);
        assert_eq!(one.quantile_us(0.99), Some(1_500_000.0));
        for us in [1u64 << 20, (1 << 20) + 1, 1 << 30, u64::MAX / 1000] {
            let b = Hist::bucket(us);
            assert!(b < Hist::new().buckets.len(), "{us}");
            assert!(Hist::upper_edge(b) > us as f64, "{us}");
        }
    }
}
