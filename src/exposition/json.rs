//! `?format=json`: one JSON document for scripts.
//!
//! ```json
//! {"zone":"metrics","families":[
//!   {"name":"app_requests_total","type":"counter","help":"...","unit":"","group":"app",
//!    "labels":["code"],"series":[{"labels":{"code":"200"},"value":3,"created":1700000000.5}]},
//!   {"name":"app_latency_seconds","type":"histogram",...,"series":[{"labels":{},
//!    "count":3,"sum":5.55,"buckets":[{"le":0.1,"count":1},{"le":1,"count":2}],
//!    "quantiles":{"p50":0.5,"p90":5.0,"p99":5.0,"p999":5.0,"max":5.0},"created":...}]}]}
//! ```
//! Numbers that JSON cannot hold (`NaN`, infinities) are `null`: a quantile of a
//! series without observations, or one that falls above the histogram's `highest`.

use super::model::{label_values, Meta, Sink};
use super::model::{CounterValue, HistogramValue, SummaryValue};
use super::number::{write_f64, write_ms_as_seconds, write_u64, Out};

pub const CONTENT_TYPE: &str = "application/json";

/// JSON keys of [`crate::metrics::histogram::SUMMARY_QUANTILES`].
pub const QUANTILE_KEYS: [&str; 5] = ["p50", "p90", "p99", "p999", "max"];

/// A JSON string, quoted and escaped (serde_json's escaping, RFC 8259).
pub fn write_string(out: &mut impl Out, s: &str) {
    // Serializing a `&str` cannot fail.
    out.put_str(&serde_json::to_string(s).unwrap_or_default());
}

/// A JSON number, `null` when not finite.
pub fn write_number(out: &mut impl Out, v: f64) {
    if v.is_finite() {
        write_f64(out, v);
    } else {
        out.put_str("null");
    }
}

pub struct JsonSink<'o> {
    out: &'o mut Vec<u8>,
    first_family: bool,
    first_series: bool,
}

impl<'o> JsonSink<'o> {
    pub fn new(out: &'o mut Vec<u8>, zone: &str) -> JsonSink<'o> {
        out.put_str("{\"zone\":");
        write_string(out, zone);
        out.put_str(",\"families\":[");
        JsonSink {
            out,
            first_family: true,
            first_series: true,
        }
    }

    /// `,"quantiles":{"p50":..,...}`: histograms and summaries share it.
    fn quantiles(&mut self, quantiles: &[f64]) {
        self.out.put_str(",\"quantiles\":{");
        for (i, (k, v)) in QUANTILE_KEYS.iter().zip(quantiles).enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.out.put_fmt(format_args!("\"{k}\":"));
            write_number(self.out, *v);
        }
        self.out.push(b'}');
    }

    /// `{"labels":{...}`: a series up to its values.
    fn open_series(&mut self, m: &Meta<'_>, labels: &[u8]) {
        if !self.first_series {
            self.out.push(b',');
        }
        self.first_series = false;
        self.out.put_str("{\"labels\":{");
        for (i, (n, v)) in m.label_names.iter().zip(label_values(labels)).enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_string(self.out, n);
            self.out.push(b':');
            write_string(self.out, v);
        }
        self.out.push(b'}');
    }

    fn created(&mut self, created: Option<u64>) {
        if let Some(ms) = created {
            self.out.put_str(",\"created\":");
            write_ms_as_seconds(self.out, ms);
        }
    }
}

impl Sink for JsonSink<'_> {
    const SUMMARY_FAMILIES: bool = false;

    fn family(&mut self, m: &Meta<'_>) {
        if !self.first_family {
            self.out.push(b',');
        }
        self.first_family = false;
        self.first_series = true;
        self.out.put_str("{\"name\":");
        write_string(self.out, m.name);
        self.out.put_str(",\"type\":");
        write_string(self.out, m.declared.as_str());
        self.out.put_str(",\"help\":");
        write_string(self.out, m.help);
        self.out.put_str(",\"unit\":");
        write_string(self.out, m.unit);
        self.out.put_str(",\"group\":");
        write_string(self.out, m.group);
        self.out.put_str(",\"labels\":[");
        for (i, l) in m.label_names.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_string(self.out, l);
        }
        self.out.put_str("],\"series\":[");
    }

    fn counter(&mut self, m: &Meta<'_>, labels: &[u8], c: &CounterValue) {
        self.open_series(m, labels);
        self.out.put_str(",\"value\":");
        if c.float == 0.0 {
            write_u64(self.out, c.int);
        } else {
            write_number(self.out, c.int as f64 + c.float);
        }
        self.created(c.created);
        self.out.push(b'}');
    }

    fn gauge(&mut self, m: &Meta<'_>, labels: &[u8], v: f64) {
        self.open_series(m, labels);
        self.out.put_str(",\"value\":");
        write_number(self.out, v);
        self.out.push(b'}');
    }

    fn histogram(&mut self, m: &Meta<'_>, labels: &[u8], h: &HistogramValue<'_>) {
        self.open_series(m, labels);
        self.out.put_str(",\"count\":");
        write_u64(self.out, h.count);
        self.out.put_str(",\"sum\":");
        write_number(self.out, h.sum);
        self.out.put_str(",\"buckets\":[");
        for (i, (le, c)) in m.buckets.iter().zip(h.cumulative).enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.out.put_str("{\"le\":");
            write_number(self.out, *le);
            self.out.put_str(",\"count\":");
            write_u64(self.out, *c);
            self.out.push(b'}');
        }
        self.out.push(b']');
        self.quantiles(h.quantiles);
        self.created(h.created);
        self.out.push(b'}');
    }

    // JSON carries quantiles inside histograms (SUMMARY_FAMILIES is false).
    fn summary(&mut self, m: &Meta<'_>, labels: &[u8], s: &SummaryValue<'_>) {
        self.open_series(m, labels);
        self.out.put_str(",\"count\":");
        write_u64(self.out, s.count);
        self.out.put_str(",\"sum\":");
        write_number(self.out, s.sum);
        self.quantiles(s.quantiles);
        self.created(s.created);
        self.out.push(b'}');
    }

    fn end_family(&mut self, _m: &Meta<'_>) {
        self.out.put_str("]}");
    }

    fn finish(&mut self) {
        self.out.put_str("]}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::tests::render_string;
    use crate::exposition::{Format, Scrape};
    use crate::metrics::Store;
    use crate::shm::Region;

    #[test]
    fn strings_and_numbers() {
        let mut s = String::new();
        write_string(&mut s, "a\"b\\c\nd\u{1}é");
        write_number(&mut s, f64::NAN);
        write_number(&mut s, 1e-7);
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001é\"null1e-7");
    }

    #[test]
    fn json_renders_byte_for_byte() {
        let mem = crate::exposition::tests::sample_zone();
        let s = Store::attach(Region::new(&mem)).unwrap();
        let out = render_string(&Scrape {
            format: Format::Json,
            ..Scrape::new(s, "z")
        })
        .unwrap();
        let want = r##"{"zone":"z","families":[{"name":"http_requests_total","type":"counter","help":"Requests.","unit":"","group":"app","labels":["code"],"series":[{"labels":{"code":"200"},"value":3,"created":1700000000.123},{"labels":{"code":"a\"b\\\n"},"value":0.5,"created":1700000000.623}]},{"name":"kong_bandwidth_bytes","type":"counter","help":"","unit":"bytes","group":"http","labels":[],"series":[{"labels":{},"value":42,"created":1700000000.123}]},{"name":"temperature_celsius","type":"gauge","help":"Say \"hot\"\\ or\ncold.","unit":"celsius","group":"app","labels":[],"series":[{"labels":{},"value":-1.5}]},{"name":"latency_seconds","type":"histogram","help":"Latency.","unit":"seconds","group":"app","labels":["route"],"series":[{"labels":{"route":"/"},"count":3,"sum":5.55,"buckets":[{"le":0.005,"count":0},{"le":0.1,"count":1},{"le":1,"count":2}],"quantiles":{"p50":0.501759,"p90":5.013503,"p99":5.013503,"p999":5.013503,"max":5.013503},"created":1700000000.123}]},{"name":"size_bytes","type":"histogram","help":"","unit":"","group":"http","labels":[],"series":[{"labels":{},"count":0,"sum":0,"buckets":[{"le":100,"count":0}],"quantiles":{"p50":null,"p90":null,"p99":null,"p999":null,"max":null},"created":1700000000.123}]},{"name":"nginx_metric_errors_total","type":"counter","help":"Metric updates and series refused or failed, by reason.","unit":"","group":"nginx","labels":["zone","reason"],"series":[{"labels":{"zone":"z","reason":"zone_full"},"value":0,"created":1234},{"labels":{"zone":"z","reason":"series_limit"},"value":0,"created":1234},{"labels":{"zone":"z","reason":"label_count"},"value":0,"created":1234},{"labels":{"zone":"z","reason":"invalid_label_value"},"value":0,"created":1234},{"labels":{"zone":"z","reason":"invalid_value"},"value":0,"created":1234},{"labels":{"zone":"z","reason":"bad_handle"},"value":0,"created":1234},{"labels":{"zone":"z","reason":"lua"},"value":0,"created":1234},{"labels":{"zone":"z","reason":"stale_handle"},"value":0,"created":1234},{"labels":{"zone":"z","reason":"invalid_exemplar"},"value":0,"created":1234}]},{"name":"nginx_metric_zone_bytes","type":"gauge","help":"Bytes of the metrics zone: used, in all, and freed but not reusable yet.","unit":"bytes","group":"nginx","labels":["zone","state"],"series":[{"labels":{"zone":"z","state":"used"},"value":19240},{"labels":{"zone":"z","state":"capacity"},"value":524288},{"labels":{"zone":"z","state":"waiting"},"value":0}]},{"name":"nginx_metric_series","type":"gauge","help":"Series kept in the metrics zone.","unit":"","group":"nginx","labels":["zone"],"series":[{"labels":{"zone":"z"},"value":6}]},{"name":"nginx_metric_lock_takeovers_total","type":"counter","help":"Times the zone lock was taken over from a process that died holding it.","unit":"","group":"nginx","labels":["zone"],"series":[{"labels":{"zone":"z"},"value":0,"created":1234}]}]}
"##;
        assert_eq!(out, want);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["families"][3]["series"][0]["quantiles"]["p50"], 0.501759);
    }
}
