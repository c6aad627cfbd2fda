//! What constant labels cost a scrape: the same zone (counters with three labels)
//! rendered as text without an identity, with one but no constant labels, and with
//! three constant labels, alternating; prints medians and ratios to the first.
//! A measurement, not a check: `bench/labels.sh` runs it
//! (`cargo bench --no-default-features --bench render`; `RENDER_SERIES`, default 100k)
//! and puts its table in BENCHMARKS.md.

use ngx_prometheus::config::identity::{ConstLabels, Identity};
use ngx_prometheus::exposition::{render, Scrape};
use ngx_prometheus::metrics::{counter, FamilySpec, MetricType, Participant, Store};
use ngx_prometheus::shm::region::heap_words;
use ngx_prometheus::shm::Region;

fn main() {
    let series: usize = std::env::var("RENDER_SERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let mem = heap_words(series * 40 + (1 << 16));
    let store = Store::format(Region::new(&mem), 0).expect("zone");
    let alive = |_: u32| true;
    let spec = FamilySpec {
        help: "Requests.".into(),
        ..FamilySpec::new(
            "http_requests_total",
            MetricType::Counter,
            &["service", "route", "code"],
        )
    };
    let f = store
        .register(
            &spec,
            Participant {
                me: 1,
                alive: &alive,
            },
        )
        .expect("family");
    for i in 0..series {
        let (svc, route) = (format!("svc-{}", i % 100), format!("/route/{i}"));
        let h = store
            .find_or_make(
                f,
                &[svc.as_str(), route.as_str(), "200"],
                Participant {
                    me: 1,
                    alive: &alive,
                },
                Default::default(),
            )
            .expect("series")
            .handle;
        counter::inc(&store.region(), h, i as u64).expect("inc");
    }
    let plain = Identity {
        labels: ConstLabels::default(),
        nginx_version: "1.22.1".into(),
    };
    let labelled = Identity {
        labels: ConstLabels::parse(
            &[
                "node_id=3f1c2d9e-6a4b-4f0e-9c1d-2b7a8e5f4c3b",
                "hostname=web-17.eu-west-1.example.com",
                "zone=eu-west-1",
            ],
            &[],
        )
        .expect("labels"),
        nginx_version: "1.22.1".into(),
    };
    let cases: [(&str, Option<&Identity>); 3] = [
        ("no identity", None),
        ("identity, no labels", Some(&plain)),
        ("3 constant labels", Some(&labelled)),
    ];
    let reps = 9;
    let mut times = vec![Vec::new(); cases.len()];
    let mut bytes = vec![0; cases.len()];
    let mut out = Vec::new();
    for _ in 0..reps {
        for (i, (_, id)) in cases.iter().enumerate() {
            out.clear();
            let t = std::time::Instant::now();
            let scrape = Scrape {
                identity: *id,
                ..Scrape::new(store, "z")
            };
            render(&mut out, &scrape).expect("render");
            times[i].push(t.elapsed().as_secs_f64() * 1000.0);
            bytes[i] = out.len();
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let base = median(&mut times[0].clone());
    println!("| case | median ms | ratio | bytes |");
    println!("|---|---|---|---|");
    for (i, (name, _)) in cases.iter().enumerate() {
        let m = median(&mut times[i]);
        println!(
            "| {name} ({series} series) | {m:.1} | {:.2} | {} |",
            m / base,
            bytes[i]
        );
    }
}
