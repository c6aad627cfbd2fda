//! What a sweep costs per 100,000 series, and
//! the zone's bytes after a million label sets churned through it with `expire`.
//! A measurement, not a check: `bench/lifecycle.sh` runs it
//! (`cargo bench --no-default-features --bench sweep`; `SWEEP_SERIES`, default 100k)
//! and puts its table in BENCHMARKS.md.

use ngx_prometheus::metrics::{FamilySpec, MetricType, Store};
use ngx_prometheus::shm::region::heap_words;
use ngx_prometheus::shm::Region;

fn main() {
    let alive = |_: u32| true;
    let n: u64 = std::env::var("SWEEP_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mem = heap_words(1 << 24);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let mut spec = FamilySpec::new("sweep_total", MetricType::Counter, &["k"]);
    spec.expire_s = 3600;
    let f = s.register(&spec, 1, &alive).unwrap();
    let t = 1_000_000_000;
    for i in 0..n {
        s.series_at(f, &[format!("{i:08}")], 1, &alive, t).unwrap();
    }
    let time = |at: u64| {
        let start = std::time::Instant::now();
        let mut looked = 0;
        let mut deleted = 0;
        while looked < n {
            let (l, d) = s.sweep(10_000, at, 1, &alive);
            looked += l;
            deleted += d;
        }
        (
            start.elapsed().as_secs_f64() * 1e3 * 100_000.0 / n as f64,
            deleted,
        )
    };
    let (keep_ms, kept) = time(t + 1000);
    s.set_expire(f, 1);
    let (delete_ms, deleted) = time(t + 10_000);
    assert_eq!((kept, deleted), (0, n));
    // One million label sets, 5,000 a second of simulated time, expire 1 s, a sweep
    // of 10,000 records every 250 ms.
    let mem = heap_words(1 << 19); // 4 MB
    let c = Store::format(Region::new(&mem), 0).unwrap();
    let mut spec = FamilySpec::new("churn_total", MetricType::Counter, &["k"]);
    spec.expire_s = 1;
    let f = c.register(&spec, 1, &alive).unwrap();
    let (mut peak, mut refused) = (0, 0);
    for i in 0..1_000_000u64 {
        let now = t + i / 5; // 5 per ms
        if c.series_at(f, &[format!("{i:08}")], 1, &alive, now)
            .is_err()
        {
            refused += 1;
        }
        if i % 1250 == 0 {
            c.sweep(10_000, now, 1, &alive);
        }
        peak = peak.max(c.arena().used_bytes());
    }
    println!("| measure | value |");
    println!("|---|---|");
    println!("| sweep pass, nothing expired | {keep_ms:.1} ms per 100,000 series |");
    println!(
        "| sweep pass, every series expired and deleted | {delete_ms:.1} ms per 100,000 series |"
    );
    println!("| 1,000,000 label sets through a 4 MB zone (expire 1 s, 5,000/s) | peak {peak} bytes used, {refused} refused |");
}
