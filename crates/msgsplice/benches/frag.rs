//! Microbenchmarks of the allocator against the usual heap containers.
//!
//! `cargo bench -p msgsplice --bench frag`. The cross-thread variants and
//! the side-by-side table live in `msgsplice bench --sections alloc`.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use msgsplice::frag::{BucketMode, FragCache};

fn memdup(c: &mut Criterion) {
    let per_thread = FragCache::new();
    let per_cpu = FragCache::builder()
        .bucket_mode(BucketMode::PerCpu)
        .build()
        .unwrap();
    let mut g = c.benchmark_group("memdup+drop");
    for size in [64usize, 256, 1500] {
        let src = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(
            BenchmarkId::new("FragCache/per-thread", size),
            &src,
            |b, s| b.iter(|| drop(black_box(per_thread.memdup(black_box(s)).unwrap()))),
        );
        g.bench_with_input(BenchmarkId::new("FragCache/per-cpu", size), &src, |b, s| {
            b.iter(|| drop(black_box(per_cpu.memdup(black_box(s)).unwrap())))
        });
        g.bench_with_input(
            BenchmarkId::new("Bytes::copy_from_slice", size),
            &src,
            |b, s| b.iter(|| drop(black_box(Bytes::copy_from_slice(black_box(s))))),
        );
        g.bench_with_input(BenchmarkId::new("Vec<u8>", size), &src, |b, s| {
            b.iter(|| drop(black_box(black_box(s).to_vec())))
        });
        g.bench_with_input(BenchmarkId::new("Box<[u8]>", size), &src, |b, s| {
            b.iter(|| drop(black_box(Box::<[u8]>::from(black_box(&s[..])))))
        });
        g.bench_with_input(BenchmarkId::new("Arc<[u8]>", size), &src, |b, s| {
            b.iter(|| drop(black_box(Arc::<[u8]>::from(black_box(&s[..])))))
        });
    }
    g.finish();
}

fn alloc_4k(c: &mut Criterion) {
    let cache = FragCache::new();
    let mut g = c.benchmark_group("alloc+drop 4KiB");
    g.bench_function("FragCache", |b| {
        b.iter(|| drop(black_box(cache.alloc(4096, 64).unwrap())))
    });
    g.bench_function("Vec<u8>", |b| {
        b.iter(|| drop(black_box(Vec::<u8>::with_capacity(4096))))
    });
    g.bench_function("Box<[u8]> zeroed", |b| {
        b.iter(|| drop(black_box(vec![0u8; 4096].into_boxed_slice())))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = memdup, alloc_4k
}
criterion_main!(benches);
