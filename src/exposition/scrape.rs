//! What one scrape reads and how it is written: the [`Scrape`] every entry point (the
//! metrics handler, Lua's `render`, the pusher) describes its scrape with, its
//! [`Format`], nginx's connection counters ([`StubStatus`]) and the [`Collector`]s of
//! the families a scrape reads rather than stores.

use super::model::{Meta, Series};
use super::select::Selection;
use super::{json, openmetrics, protobuf, status_page, text};
use crate::config::identity::Identity;
use crate::metrics::Store;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4, the default.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
    /// JSON for scripts (`?format=json`).
    Json,
    /// Length-delimited `io.prometheus.client.MetricFamily` messages, with native
    /// histograms.
    Protobuf,
    /// The status page (`?format=html`): a fixed document that reads the JSON of the
    /// same URL; nothing of the zone is in it. Never chosen by `Accept`, nor by
    /// [`Format::parse`] (Lua's `render` returns data, not a page).
    Html,
}

impl Format {
    /// `?format=` values.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "text" => Some(Format::Text),
            "openmetrics" => Some(Format::OpenMetrics),
            "json" => Some(Format::Json),
            "protobuf" => Some(Format::Protobuf),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => text::CONTENT_TYPE,
            Format::OpenMetrics => openmetrics::CONTENT_TYPE,
            Format::Json => json::CONTENT_TYPE,
            Format::Protobuf => protobuf::CONTENT_TYPE,
            Format::Html => status_page::CONTENT_TYPE,
        }
    }

    /// Headers an answer in this format carries beyond those every answer has.
    pub fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Format::Html => status_page::headers(),
            _ => &[],
        }
    }
}

/// One scrape: what it reads and how it is written. Every entry point (the metrics
/// handler, Lua's `render`, the pusher) describes its scrape with one.
#[derive(Clone)]
pub struct Scrape<'s> {
    pub store: Store<'s>,
    /// The zone's name, as the module's own families label it.
    pub zone: String,
    /// nginx's connection counters, where `stub_status` has them.
    pub stub: Option<StubStatus>,
    pub selection: Selection,
    /// With an identity, every series gets its constant labels and the build info
    /// family is written.
    pub identity: Option<&'s Identity>,
    pub format: Format,
}

impl<'s> Scrape<'s> {
    /// Everything in `store`, as text, without nginx's counters or an identity.
    pub fn new(store: Store<'s>, zone: &str) -> Scrape<'s> {
        Scrape {
            store,
            zone: zone.to_string(),
            stub: None,
            selection: Selection::default(),
            identity: None,
            format: Format::Text,
        }
    }
}

/// nginx's connection counters, as `stub_status` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StubStatus {
    pub accepted: u64,
    pub handled: u64,
    pub requests: u64,
    pub active: u64,
    pub reading: u64,
    pub writing: u64,
    pub waiting: u64,
}

/// Families a scrape reads rather than stores (client_rust's `Collector`): handed to
/// the walk, which writes them after the zone's own, through the same sink.
pub trait Collector {
    /// Adds the families this collector writes for `scrape`, as (name, group): what
    /// a selection may name.
    fn families(&self, scrape: &Scrape<'_>, out: &mut Vec<(&'static str, &'static str)>);
    /// Hands each of its families to `family`, in order, with its series.
    fn collect(&self, scrape: &Scrape<'_>, family: &mut dyn FnMut(&Meta<'_>, &Series<'_>));
}
