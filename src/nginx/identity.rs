//! `prometheus_node_id_file <path>;` and `prometheus_const_labels name=value ...;`:
//! resolved once the whole `http {}` block is read (the labels may name `$node_id`
//! whichever directive comes first), so errors reach `nginx -t`.

use super::{conf_error, MainConf};
use crate::config::identity::{hostname, node_id, ConstLabels, Identity};
use ngx::ffi::ngx_conf_t;
use std::ffi::c_char;

directive! {
    pub(super) fn node_id_file_directive(cf, mcf: &mut MainConf, a) {
        if mcf.node_id_file.is_some() {
            return conf_error(cf, "prometheus_node_id_file: is duplicate");
        }
        // A file nginx writes, so relative to the prefix, as `pid` and `error_log` are.
        match super::full_name(cf, a[0], false) {
            Ok(path) => mcf.node_id_file = Some(path),
            Err(e) => return conf_error(cf, &format!("prometheus_node_id_file: {e}")),
        }
        ngx::core::NGX_CONF_OK
    }
}

directive! {
    pub(super) fn const_labels_directive(cf, mcf: &mut MainConf, a) {
        if !mcf.const_labels.is_empty() {
            return conf_error(cf, "prometheus_const_labels: is duplicate");
        }
        mcf.const_labels = a.iter().map(|s| s.to_string()).collect();
        ngx::core::NGX_CONF_OK
    }
}

/// Reads or makes the node id and builds the identity every scrape and push uses.
pub(super) fn resolve(cf: *mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), *mut c_char> {
    let host = hostname().map_err(|e| conf_error(cf, &format!("prometheus_const_labels: {e}")))?;
    let id = match &mcf.node_id_file {
        Some(path) => Some(
            node_id(std::path::Path::new(path))
                .map_err(|e| conf_error(cf, &format!("prometheus_node_id_file: {e}")))?,
        ),
        None => None,
    };
    let mut vars: Vec<(&str, &str)> = vec![("hostname", host.as_str())];
    if let Some(id) = &id {
        vars.push(("node_id", id.as_str()));
    }
    let words: Vec<&str> = mcf.const_labels.iter().map(String::as_str).collect();
    let labels = ConstLabels::parse(&words, &vars).map_err(|e| {
        let hint = if e.contains("$node_id") && id.is_none() {
            " ($node_id needs prometheus_node_id_file)"
        } else {
            ""
        };
        conf_error(cf, &format!("prometheus_const_labels: {e}{hint}"))
    })?;
    mcf.hostname = host;
    mcf.node_id = id;
    mcf.identity = Identity {
        labels,
        nginx_version: ngx::ffi::NGINX_VERSION.to_str().unwrap_or("").to_string(),
    };
    Ok(())
}
