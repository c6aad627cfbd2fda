//! Constant labels (`prometheus_const_labels`): put in front of every series' own
//! labels at render time, for any format.

use super::model::{CounterValue, HistogramValue, NativeHistogramValue, SummaryValue};
use super::model::{Meta, Sink};
use crate::config::identity::ConstLabels;
use crate::metrics::store::encode_key;

/// Puts the constant labels in front of every series' own labels, for any sink.
pub(super) struct WithConstLabels<'c, S> {
    inner: &'c mut S,
    consts: &'c ConstLabels,
    /// The constant values as a key prefix (keys are concatenated values).
    prefix: Vec<u8>,
    names: Vec<String>,
    key: Vec<u8>,
}

impl<'c, S> WithConstLabels<'c, S> {
    pub(super) fn new(inner: &'c mut S, consts: &'c ConstLabels) -> Self {
        WithConstLabels {
            inner,
            consts,
            prefix: encode_key(&consts.values),
            names: Vec::new(),
            key: Vec::new(),
        }
    }
}

impl<S> WithConstLabels<'_, S> {
    /// Sets `key` to the constant values and then `labels`.
    fn set_key(&mut self, labels: &[u8]) {
        self.key.clear();
        self.key.extend_from_slice(&self.prefix);
        self.key.extend_from_slice(labels);
    }
}

impl<S: Sink> Sink for WithConstLabels<'_, S> {
    const SUMMARY_FAMILIES: bool = S::SUMMARY_FAMILIES;
    const NATIVE_HISTOGRAMS: bool = S::NATIVE_HISTOGRAMS;

    fn family(&mut self, m: &Meta<'_>) {
        self.names = self.consts.family_names(m.label_names);
        self.inner.family(&Meta {
            label_names: &self.names,
            ..*m
        });
    }

    fn counter(&mut self, m: &Meta<'_>, labels: &[u8], c: &CounterValue) {
        self.set_key(labels);
        let meta = Meta {
            label_names: &self.names,
            ..*m
        };
        self.inner.counter(&meta, &self.key, c);
    }

    fn gauge(&mut self, m: &Meta<'_>, labels: &[u8], v: f64) {
        self.set_key(labels);
        let meta = Meta {
            label_names: &self.names,
            ..*m
        };
        self.inner.gauge(&meta, &self.key, v);
    }

    fn histogram(&mut self, m: &Meta<'_>, labels: &[u8], h: &HistogramValue<'_>) {
        self.set_key(labels);
        let meta = Meta {
            label_names: &self.names,
            ..*m
        };
        self.inner.histogram(&meta, &self.key, h);
    }

    fn native_histogram(&mut self, m: &Meta<'_>, labels: &[u8], h: &NativeHistogramValue<'_>) {
        self.set_key(labels);
        let meta = Meta {
            label_names: &self.names,
            ..*m
        };
        self.inner.native_histogram(&meta, &self.key, h);
    }

    fn summary(&mut self, m: &Meta<'_>, labels: &[u8], s: &SummaryValue<'_>) {
        self.set_key(labels);
        let meta = Meta {
            label_names: &self.names,
            ..*m
        };
        self.inner.summary(&meta, &self.key, s);
    }

    fn end_family(&mut self, m: &Meta<'_>) {
        self.inner.end_family(&Meta {
            label_names: &self.names,
            ..*m
        });
    }

    fn finish(&mut self) {
        self.inner.finish();
    }
}
