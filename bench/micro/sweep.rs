//! What a sweep costs per 100,000 series, the zone's bytes after a million label sets
//! churned through it with `expire`, and what deleting a series and reusing its block
//! costs under the epoch scheme (two workers announcing, as their timers do).
//! A measurement, not a check: `bench/lifecycle.sh` runs it
//! (`cargo bench --no-default-features --bench sweep`; `SWEEP_SERIES`, default 100k)
//! and puts its table in BENCHMARKS.md.

use ngx_prometheus::metrics::{FamilySpec, MetricType, Participant, SeriesOptions, Store};
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
    let f = s
        .register(
            &spec,
            Participant {
                me: 1,
                alive: &alive,
            },
        )
        .unwrap();
    let t = 1_000_000_000;
    for i in 0..n {
        s.find_or_make(
            f,
            &[format!("{i:08}")],
            Participant {
                me: 1,
                alive: &alive,
            },
            SeriesOptions {
                created_ms: Some(t),
            },
        )
        .unwrap();
    }
    let time = |at: u64| {
        let start = std::time::Instant::now();
        let mut looked = 0;
        let mut deleted = 0;
        while looked < n {
            let (l, d) = s.sweep(
                10_000,
                at,
                Participant {
                    me: 1,
                    alive: &alive,
                },
            );
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
    // of 10,000 records every 250 ms; two workers announce every 100 ms (their timers).
    let mem = heap_words(1 << 19); // 4 MB
    let c = Store::format(Region::new(&mem), 0).unwrap();
    let workers = [1, 2].map(|pid| {
        c.join_epochs(Participant {
            me: pid,
            alive: &alive,
        })
        .unwrap()
    });
    let mut spec = FamilySpec::new("churn_total", MetricType::Counter, &["k"]);
    spec.expire_s = 1;
    let f = c
        .register(
            &spec,
            Participant {
                me: 1,
                alive: &alive,
            },
        )
        .unwrap();
    let (mut peak, mut refused) = (0, 0);
    for i in 0..1_000_000u64 {
        let now = t + i / 5; // 5 per ms
        if c.find_or_make(
            f,
            &[format!("{i:08}")],
            Participant {
                me: 1,
                alive: &alive,
            },
            SeriesOptions {
                created_ms: Some(now),
            },
        )
        .is_err()
        {
            refused += 1;
        }
        if i % 1250 == 0 {
            c.sweep(
                10_000,
                now,
                Participant {
                    me: 1,
                    alive: &alive,
                },
            );
        }
        if i % 500 == 0 {
            workers.iter().for_each(|&w| c.announce(w));
        }
        peak = peak.max(c.arena().used_bytes());
    }
    let reuse = reuse_costs(n.min(100_000), &alive);
    println!("| measure | value |");
    println!("|---|---|");
    println!("| sweep pass, nothing expired | {keep_ms:.1} ms per 100,000 series |");
    println!(
        "| sweep pass, every series expired and deleted | {delete_ms:.1} ms per 100,000 series |"
    );
    println!("| 1,000,000 label sets through a 4 MB zone (expire 1 s, 5,000/s) | peak {peak} bytes used, {refused} refused |");
    println!(
        "| a new series in fresh memory (`find_or_make`, 1 label) | {:.0} ns |",
        reuse.fresh_ns
    );
    println!(
        "| delete a series (`delete_series`: unlink, free, stamp the epoch) | {:.0} ns |",
        reuse.delete_ns
    );
    println!(
        "| a new series taking a freed block, after both workers announced | {:.0} ns (zone bytes unchanged: {}) |",
        reuse.reuse_ns, reuse.bytes_unchanged
    );
    println!(
        "| a worker's announcement (its 100 ms timer: one load, a store when the epoch moved) | {:.1} ns |",
        reuse.announce_ns
    );
    println!(
        "| counting the bytes that wait, every worker past every free (each worker, every 100 ms) | {:.0} ns |",
        reuse.waiting_idle_ns
    );
    println!(
        "| the same with a worker behind, {} freed blocks on the lists | {:.0} µs |",
        reuse.freed, reuse.waiting_behind_us
    );
}

struct ReuseCosts {
    fresh_ns: f64,
    delete_ns: f64,
    reuse_ns: f64,
    bytes_unchanged: bool,
    announce_ns: f64,
    waiting_idle_ns: f64,
    waiting_behind_us: f64,
    freed: u64,
}

/// Deleting a series and reusing its block, per operation, with two participants.
fn reuse_costs(n: u64, alive: &dyn Fn(u32) -> bool) -> ReuseCosts {
    let per =
        |start: std::time::Instant, ops: u64| start.elapsed().as_secs_f64() * 1e9 / ops as f64;
    let mem = heap_words(1 << 24);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let workers = [1, 2].map(|pid| s.join_epochs(Participant { me: pid, alive }).unwrap());
    let f = s
        .register(
            &FamilySpec::new("reuse_total", MetricType::Counter, &["k"]),
            Participant { me: 1, alive },
        )
        .unwrap();
    let t = 1_000_000_000;
    let keys: Vec<[String; 1]> = (0..2 * n).map(|i| [format!("{i:08}")]).collect();
    let start = std::time::Instant::now();
    for k in &keys[..n as usize] {
        s.find_or_make(
            f,
            k,
            Participant { me: 1, alive },
            SeriesOptions {
                created_ms: Some(t),
            },
        )
        .unwrap();
    }
    let fresh_ns = per(start, n);
    let start = std::time::Instant::now();
    for k in &keys[..n as usize] {
        assert!(s.delete_series(f, k, Participant { me: 1, alive }));
    }
    let delete_ns = per(start, n);
    let start = std::time::Instant::now();
    for _ in 0..n {
        workers.iter().for_each(|&w| s.announce(w));
    }
    let announce_ns = per(start, 2 * n);
    let used = s.arena().used_bytes();
    let start = std::time::Instant::now();
    for k in &keys[n as usize..] {
        s.find_or_make(
            f,
            k,
            Participant { me: 1, alive },
            SeriesOptions {
                created_ms: Some(t),
            },
        )
        .unwrap();
    }
    let reuse_ns = per(start, n);
    let bytes_unchanged = s.arena().used_bytes() == used;
    let start = std::time::Instant::now();
    for _ in 0..1000 {
        s.waiting_bytes(Participant { me: 1, alive });
    }
    let waiting_idle_ns = per(start, 1000);
    // Worker 2 stops announcing; worker 1 deletes the series again: all wait on worker 2.
    for k in &keys[n as usize..] {
        s.delete_series(f, k, Participant { me: 1, alive });
    }
    s.announce(workers[0]);
    let start = std::time::Instant::now();
    for _ in 0..10 {
        s.waiting_bytes(Participant { me: 1, alive });
    }
    let waiting_behind_us = per(start, 10) / 1e3;
    ReuseCosts {
        fresh_ns,
        delete_ns,
        reuse_ns,
        bytes_unchanged,
        announce_ns,
        waiting_idle_ns,
        waiting_behind_us,
        freed: n,
    }
}
