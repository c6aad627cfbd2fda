//! `prometheus_max_renders number;` / `prometheus_max_pinned size;`: the directives of
//! the per-worker scrape limits kept by [`crate::config::limits`].

use super::{conf_error, MainConf};
use crate::config::limits::{parse_max_renders, Limits};

/// The limits of a configuration.
pub fn of(mcf: &MainConf) -> Limits {
    Limits::new(mcf.max_renders, mcf.max_pinned)
}

directive! {
    /// `prometheus_max_renders number;`
    pub(super) fn max_renders_directive(cf, mcf: &mut MainConf, a) {
        if mcf.max_renders.is_some() {
            return conf_error(cf, "prometheus_max_renders: is duplicate");
        }
        match parse_max_renders(a[0]) {
            Ok(n) => {
                mcf.max_renders = Some(n);
                ngx::core::NGX_CONF_OK
            }
            Err(why) => conf_error(cf, &format!("prometheus_max_renders: {why}")),
        }
    }
}

directive! {
    /// `prometheus_max_pinned size;`
    pub(super) fn max_pinned_directive(cf, mcf: &mut MainConf, a) {
        if mcf.max_pinned.is_some() {
            return conf_error(cf, "prometheus_max_pinned: is duplicate");
        }
        match crate::config::directives::max_pinned(a[0], &super::parse_size) {
            Ok(size) => mcf.max_pinned = Some(size),
            Err(why) => return conf_error(cf, &format!("prometheus_max_pinned: {why}")),
        }
        ngx::core::NGX_CONF_OK
    }
}
