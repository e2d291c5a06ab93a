//! The physical reference: how fast one thread copies memory that does not
//! fit in cache.
//!
//! Every copying send strategy pays at least one such copy per byte (into
//! the socket buffer), so this number bounds what copying can reach and
//! shows how much room splicing has. 64 MiB buffers are far larger than the
//! caches of these machines, so the copy runs at memory bandwidth.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::report::{Group, Outcome, Row, Table};
use super::{Options, Progress, Section};

const RUN: Duration = Duration::from_millis(300);
/// Size of each of the two buffers.
pub const BUF: usize = 64 << 20;

/// The section.
pub struct MemcpySection;

impl Section for MemcpySection {
    fn id(&self) -> &'static str {
        "memcpy"
    }

    fn title(&self) -> String {
        "single-thread memcpy bandwidth, the physical reference".into()
    }

    fn run_length(&self) -> Option<Duration> {
        Some(RUN)
    }

    fn estimate(&self, opts: &Options) -> Duration {
        opts.run_duration(RUN) * opts.runs as u32 + Duration::from_millis(100)
    }

    fn run(&self, opts: &Options, progress: &mut Progress) -> Outcome {
        let dur = opts.run_duration(RUN);
        // Written before timing, so that every page is faulted in.
        let src = vec![0x5au8; BUF];
        let mut dst = vec![0u8; BUF];
        dst.copy_from_slice(&src);
        let mut samples = Vec::new();
        for run in 0..opts.runs {
            progress.step(format_args!("memcpy 64 MiB, run {}/{}", run + 1, opts.runs));
            samples.push(copy_gbps(&src, &mut dst, dur));
        }
        let mut t = Table::new("GB/s", true, "ratio");
        t.about.push(format!(
            "bytes copied per second by copy_from_slice of 64 MiB buffers; median of {} runs of {} ms",
            opts.runs,
            dur.as_millis()
        ));
        let mut g = Group::new("64 MiB buffers");
        g.rows.extend(Row::new("memcpy", true, &samples));
        t.groups.push(g);
        t.compute_ratios();
        Outcome::Ran(t)
    }
}

/// Copies `src` into `dst` repeatedly for at least `dur` (and at least
/// once); returns GB/s (10^9 bytes copied per second).
pub fn copy_gbps(src: &[u8], dst: &mut [u8], dur: Duration) -> f64 {
    let start = Instant::now();
    let mut copied = 0u64;
    loop {
        black_box(&mut *dst).copy_from_slice(black_box(src));
        copied += src.len() as u64;
        let t = start.elapsed();
        if t >= dur {
            return copied as f64 / t.as_secs_f64() / 1e9;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_really_happen() {
        let src = vec![7u8; 1 << 16];
        let mut dst = vec![0u8; 1 << 16];
        let gbps = copy_gbps(&src, &mut dst, Duration::from_millis(1));
        assert!(gbps > 0.0 && gbps.is_finite());
        assert_eq!(dst, src);
    }
}
