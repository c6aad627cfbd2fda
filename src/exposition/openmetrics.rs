//! OpenMetrics 1.0.0 text: the sample lines of the text format ([`super::text`]) with
//! OpenMetrics' headers, counters, `_created` lines and end marker.

use super::model::{CounterValue, HistogramValue, SummaryValue};
use super::model::{ExposedType, Meta, Sink};
use super::number::{write_canonical, write_ms_as_seconds, Out};
use super::text::Lines;
use crate::metrics::family::counter_base;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `# HELP` as OpenMetrics escapes it: `\`, newline and `"`.
fn write_om_help(out: &mut impl Out, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.put_str("\\\\"),
            '\n' => out.put_str("\\n"),
            '"' => out.put_str("\\\""),
            c => out.put_char(c),
        }
    }
}

/// OpenMetrics 1.0.0. It differs from the text format 0.0.4 in: `# TYPE`, `# UNIT`,
/// `# HELP` (in that order, `"` escaped in help, empty help and unit left out);
/// counters named `<base>_total` are family `<base>` with samples `<base>_total` and
/// `<base>_created`; counters without `_total` are `unknown` (their sample keeps its
/// name in both formats); histograms and summaries get `_created`, and `_sum` (with
/// `_count`, for histograms) only when the sum is not negative; `le` and `quantile`
/// values are canonical; `# EOF` ends it.
pub struct OpenMetricsSink<'o> {
    lines: Lines<'o>,
    /// The current family is a counter exposed with `_total`/`_created`.
    counter_base: Option<String>,
}

impl<'o> OpenMetricsSink<'o> {
    pub fn new(out: &'o mut Vec<u8>) -> OpenMetricsSink<'o> {
        let mut lines = Lines::new(out, write_canonical);
        lines.exemplars = true;
        OpenMetricsSink {
            lines,
            counter_base: None,
        }
    }

    fn created(&mut self, name: &str, created: Option<u64>) {
        if let Some(ms) = created {
            self.lines.value_line(name, "_created", None);
            write_ms_as_seconds(self.lines.out, ms);
            self.lines.out.push(b'\n');
        }
    }
}

impl Sink for OpenMetricsSink<'_> {
    const SUMMARY_FAMILIES: bool = true;

    fn family(&mut self, m: &Meta<'_>) {
        self.lines.family(m);
        self.counter_base = None;
        let (family, t) = match m.kind {
            ExposedType::Counter => match counter_base(m.name) {
                Some(base) => {
                    self.counter_base = Some(base.to_string());
                    (base, "counter")
                }
                None => (m.name, "unknown"),
            },
            k => (m.name, k.as_str()),
        };
        let out = &mut *self.lines.out;
        out.put_fmt(format_args!("# TYPE {family} {t}\n"));
        if !m.unit.is_empty() {
            out.put_fmt(format_args!("# UNIT {family} {}\n", m.unit));
        }
        if !m.help.is_empty() {
            out.put_fmt(format_args!("# HELP {family} "));
            write_om_help(out, m.help);
            out.push(b'\n');
        }
    }

    fn counter(&mut self, m: &Meta<'_>, labels: &[u8], c: &CounterValue) {
        self.lines.series(m, labels);
        let base = self.counter_base.take();
        match &base {
            Some(b) => {
                self.lines.counter(b, "_total", c);
                self.created(b, c.created);
            }
            None => self.lines.counter(m.name, "", c),
        }
        self.counter_base = base;
    }

    fn gauge(&mut self, m: &Meta<'_>, labels: &[u8], v: f64) {
        self.lines.gauge(m, labels, v);
    }

    // A sum is a counter, never negative (or NaN): it is left out then, and a
    // histogram shows `_count` if and only if it shows `_sum`.
    fn histogram(&mut self, m: &Meta<'_>, labels: &[u8], h: &HistogramValue<'_>) {
        self.lines.histogram(m, labels, h, h.sum >= 0.0);
        self.created(m.name, h.created);
    }

    fn summary(&mut self, m: &Meta<'_>, labels: &[u8], s: &SummaryValue<'_>) {
        self.lines.summary(m, labels, s, s.sum >= 0.0);
        self.created(m.name, s.created);
    }

    fn end_family(&mut self, _m: &Meta<'_>) {}

    fn finish(&mut self) {
        self.lines.out.put_str("# EOF\n");
    }
}

#[cfg(test)]
mod tests {
    use crate::exposition::tests::{exemplar_zone, render_string};
    use crate::exposition::{Format, Scrape, Selection};
    use crate::metrics::Store;
    use crate::shm::Region;

    fn render(format: Format) -> String {
        let mem = exemplar_zone();
        let s = Store::attach(Region::new(&mem)).unwrap();
        render_string(&Scrape {
            format,
            selection: Selection {
                groups: vec!["app".into()],
                ..Selection::default()
            },
            ..Scrape::new(s, "z")
        })
        .unwrap()
    }

    #[test]
    fn exemplars_byte_for_byte() {
        let want = "\
# TYPE jobs counter
jobs_total{code=\"200\"} 2 # {trace_id=\"abc\"} 2 1700000001.123
jobs_created{code=\"200\"} 1700000000.123
# TYPE plain counter
plain_total 1
plain_created 1700000000.123
# TYPE req_seconds histogram
req_seconds_bucket{le=\"0.1\"} 2 # {trace_id=\"b-q\"} 0.07 1700000000.125
req_seconds_bucket{le=\"1.0\"} 3
req_seconds_bucket{le=\"+Inf\"} 4 # {trace_id=\"inf\"} 5 1700000000.126
req_seconds_sum 5.62
req_seconds_count 4
req_seconds_created 1700000000.123
# TYPE native_seconds histogram
native_seconds_bucket{le=\"0.1\"} 1 # {trace_id=\"n\"} 0.05 1700000000.128
native_seconds_bucket{le=\"+Inf\"} 1
native_seconds_sum 0.05
native_seconds_count 1
native_seconds_created 1700000000.123
# EOF
";
        assert_eq!(render(Format::OpenMetrics), want);
    }

    #[test]
    fn the_text_format_carries_no_exemplars() {
        let text = render(Format::Text);
        assert!(text.contains("jobs_total{code=\"200\"} 2\n"), "{text}");
        assert!(!text.contains('#') || !text.contains("trace_id"), "{text}");
        assert!(text.contains("native_seconds_bucket{le=\"0.1\"} 1\n"));
    }
}
