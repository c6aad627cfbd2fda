//! Admin writes while the proxy is under load: the counted routes are changed in place
//! (their tags), the global `prometheus` plugin's buckets are switched back and forth,
//! and whole services, routes, plugins and consumers are made, changed and deleted.
//! Every change is a new configuration both workers publish mid-traffic; none may
//! lose or double a count.

use crate::support::{paced, Ctx};
use serde_json::json;

/// The global `prometheus` plugin's id (the soak's first plugin).
fn global_plugin(ctx: &Ctx) -> String {
    let list = ctx
        .admin("GET", "/plugins?size=1000", None)
        .expect("plugins");
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["name"] == "prometheus"
                && p["route"].is_null()
                && p["service"].is_null()
                && p["consumer"].is_null()
        })
        .expect("the global prometheus plugin")["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Four writes a second: one change per step, a cycle of eleven steps.
pub fn writes(ctx: &Ctx) -> String {
    let global = global_plugin(ctx);
    let soak = format!("http://127.0.0.1:{}/code/200", ctx.soak);
    let mut cycles = 0;
    let steps = paced(ctx, 4.0, |n| {
        let c = n / 11;
        let (svc, route, user) = (
            format!("soak-tmp-{c}"),
            format!("soak-tmp-{c}"),
            format!("soak-user-{c}"),
        );
        match n % 11 {
            0 => {
                ctx.admin(
                    "PATCH",
                    "/routes/soak-codes",
                    Some(json!({"tags": ["soak", format!("step-{n}")]})),
                );
            }
            1 => {
                ctx.admin("POST", "/services", Some(json!({"name": svc, "url": soak})));
            }
            2 => {
                ctx.admin(
                    "POST",
                    &format!("/services/{svc}/routes"),
                    Some(json!({"name": route, "paths": [format!("/{route}")]})),
                );
            }
            3 => {
                ctx.admin(
                    "POST",
                    &format!("/routes/{route}/plugins"),
                    Some(json!({"name": "ip-restriction", "config": {"allow": ["127.0.0.1"]}})),
                );
            }
            4 => {
                ctx.admin(
                    "PATCH",
                    &format!("/routes/{route}"),
                    Some(json!({"paths": [format!("/{route}"), format!("/{route}-b")]})),
                );
                ctx.admin("POST", "/consumers", Some(json!({"username": user})));
            }
            5 => {
                // The global plugin's buckets, switched: counts are kept whole and re-cut.
                let buckets = if c % 2 == 0 {
                    json!([5, 10, 50, 100, 500, 1000])
                } else {
                    json!([25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000, 30000, 60000])
                };
                ctx.admin(
                    "PATCH",
                    &format!("/plugins/{global}"),
                    Some(json!({"config": {"request_latency_buckets": buckets}})),
                );
            }
            6 => {
                ctx.admin(
                    "POST",
                    &format!("/consumers/{user}/key-auth"),
                    Some(json!({"key": format!("{user}-key")})),
                );
            }
            7 => {
                if let Some(list) = ctx.admin("GET", &format!("/routes/{route}/plugins"), None) {
                    for p in list["data"].as_array().cloned().unwrap_or_default() {
                        let id = p["id"].as_str().unwrap_or_default();
                        ctx.admin(
                            "PATCH",
                            &format!("/plugins/{id}"),
                            Some(json!({"config": {"allow": ["127.0.0.1", "10.0.0.0/8"]}})),
                        );
                        ctx.admin("DELETE", &format!("/plugins/{id}"), None);
                    }
                }
            }
            8 => {
                ctx.admin("DELETE", &format!("/routes/{route}"), None);
            }
            9 => {
                ctx.admin("DELETE", &format!("/services/{svc}"), None);
            }
            _ => {
                ctx.admin("DELETE", &format!("/consumers/{user}"), None);
                cycles += 1;
            }
        }
    });
    format!("{steps} steps, {cycles} whole cycles of create, change, delete")
}
