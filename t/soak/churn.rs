//! Series churn with expiry: routes made and dropped under a service whose
//! `prometheus` plugin expires idle series (namespace `churn`, `expire = 2`), and
//! label sets a client chooses, made through the Lua API with `expire = 1`.

use crate::support::{paced, scrape_json, series, Client, Ctx};
use serde_json::json;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const EXPIRE: u64 = 2;

/// The churn service's own `prometheus` plugin records less than the global one (no
/// upstream health, no per-consumer series): the Admin API warns on every write that
/// stores either of them, as it should.
pub const EXPECTED_LOG: &[(&str, &str)] = &[(
    "turns off upstream_health_metrics, per_consumer, which",
    "the churn service's plugin leaves out switches the global one turns on: the Admin API's warning on each write that stores either",
)];

pub fn routes_setup(ctx: &Ctx) {
    let up = format!("http://127.0.0.1:{}/code/200", ctx.soak);
    for (path, body) in [
        ("/services", json!({"name": "churn", "url": up})),
        (
            "/services/churn/plugins",
            json!({"name": "prometheus", "config": {"namespace": "churn", "status_code_metrics": true, "latency_metrics": true, "bandwidth_metrics": true, "expire": EXPIRE}}),
        ),
    ] {
        assert!(
            ctx.admin("POST", path, Some(body)).is_some(),
            "{:?}",
            ctx.failures()
        );
    }
}

/// The routes of the `churn` family that still have series.
fn routes_with_series(ctx: &Ctx) -> Result<Vec<String>, String> {
    let s = scrape_json(ctx, "&name=churn_http_requests_total")?;
    Ok(series(&s, "churn_http_requests_total")
        .into_iter()
        .map(|(l, _)| l.get("route").cloned().unwrap_or_default())
        .collect())
}

/// Route names come back after `NAMES` routes (100 s), so that a soak of any length
/// has a steady working set (each worker's label cache keeps every name it saw, up to
/// 2 x 10,000 label sets: names that never came back would fill it for hours, by
/// design), and a name that comes back meets its own cached handles, stale since the
/// delete or the expiry.
const NAMES: u64 = 200;

/// Two new routes a second, each sent 5 requests; the even ones are deleted at once
/// (their series go with them), the odd ones are left idle until their series have
/// expired (or 30 s), then deleted.
pub fn routes(ctx: &Ctx) -> String {
    let mut idle: VecDeque<(String, Instant)> = VecDeque::new();
    let (mut expired, mut not_yet) = (0, 0);
    let mut requests = 0;
    let made = paced(ctx, 2.0, |n| {
        let name = format!("churn-{:03}", n % NAMES);
        if ctx
            .admin(
                "POST",
                "/services/churn/routes",
                Some(json!({"name": name, "paths": [format!("/{name}")]})),
            )
            .is_none()
        {
            return;
        }
        for _ in 0..5 {
            let mut c = Client::new(ctx.proxy, false);
            match c.get(&format!("/{name}"), &[]) {
                Ok((a, _)) if a.status == 200 => requests += 1,
                // A worker that has not taken the new configuration yet: no route,
                // which the global plugin counts as such.
                Ok((a, sent))
                    if a.status == 404 && a.body.starts_with(b"{\"message\":\"no Route") =>
                {
                    ctx.answered(["", "", "404", "gateway", ""], sent, a.wire);
                }
                Ok((a, _)) => ctx.fail(format!(
                    "/{name}: {} {}",
                    a.status,
                    String::from_utf8_lossy(&a.body)
                )),
                Err(e) => ctx.fail(format!("unanswered: {e}")),
            }
        }
        if n % 2 == 0 {
            ctx.admin("DELETE", &format!("/routes/{name}"), None);
        } else {
            idle.push_back((name, Instant::now()));
        }
        // The oldest idle route, once its series are gone (or it waited long enough).
        if let Some((oldest, since)) = idle.front().cloned() {
            if since.elapsed() > Duration::from_secs(EXPIRE + 1) {
                let live = routes_with_series(ctx).unwrap_or_else(|e| {
                    ctx.fail(e);
                    vec![]
                });
                let gone = !live.contains(&oldest);
                if gone || since.elapsed() > Duration::from_secs(30) {
                    if gone {
                        expired += 1;
                    } else {
                        not_yet += 1;
                    }
                    ctx.admin("DELETE", &format!("/routes/{oldest}"), None);
                    idle.pop_front();
                }
            }
        }
    });
    format!(
        "{made} routes, {requests} requests counted in churn_*; idle routes whose series expired \
         before their delete: {expired} (deleted after 30 s unexpired: {not_yet})"
    )
}

/// After the soak: every churned route's series have expired or were deleted.
pub fn routes_check(ctx: &Ctx) -> Result<String, String> {
    let mut left = vec![];
    let gone = harness_eventually(|| {
        left = routes_with_series(ctx).ok()?;
        left.is_empty().then_some(())
    });
    gone.map(|_| "every churn_* series expired or deleted".to_string())
        .ok_or_else(|| format!("churn_* series left 30 s after the soak: {left:?}"))
}

fn harness_eventually(f: impl FnMut() -> Option<()>) -> Option<()> {
    crate::harness::eventually(Duration::from_secs(30), f)
}

/// The Lua API's churn: `/lua-churn?base=B&n=N` counts N label sets `B00`..`B(N-1)`
/// in a family that expires them after 1 s; each worker caches 1,000 label sets.
pub const LUA_NGINX: &str = r#"
        location = /lua-churn {
            content_by_lua_block {
                local fam = package.loaded.soak_churn
                if not fam then
                    fam = require("ngxprom").zone("metrics"):counter("soak_churn_total",
                        "Soak: label sets a client chose, left to expire.", { "k" },
                        { expire = 1, cache = 1000 })
                    package.loaded.soak_churn = fam
                end
                local base = ngx.var.arg_base
                for i = 0, tonumber(ngx.var.arg_n) - 1 do
                    fam:inc(1, { base .. string.format("%02d", i) })
                end
                ngx.say("ok")
            }
        }
"#;

/// 20 requests a second of 50 new label sets each: 1,000 new series a second.
pub fn lua(ctx: &Ctx) -> String {
    let mut client = Client::new(ctx.soak, true);
    let n = paced(ctx, 20.0, |n| {
        match client.get(&format!("/lua-churn?base={n:08x}&n=50"), &[]) {
            Ok((a, _)) if a.status == 200 => {}
            Ok((a, _)) => ctx.fail(format!(
                "/lua-churn: {} {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            )),
            Err(e) => ctx.fail(format!("/lua-churn unanswered: {e}")),
        }
    });
    format!("{} label sets made", n * 50)
}

pub fn lua_check(ctx: &Ctx) -> Result<String, String> {
    let mut left = 0;
    harness_eventually(|| {
        let s = scrape_json(ctx, "&name=soak_churn_total").ok()?;
        left = series(&s, "soak_churn_total").len();
        (left == 0).then_some(())
    })
    .map(|_| "every soak_churn_total series expired".to_string())
    .ok_or_else(|| format!("{left} soak_churn_total series left 30 s after the soak"))
}
