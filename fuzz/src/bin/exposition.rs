//! The exposition writers (text 0.0.4, OpenMetrics 1.0, JSON) over arbitrary
//! families, label values and values; see `ngx_prometheus_fuzz::exposition`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ngx_prometheus_fuzz::exposition::{self as e, Input};

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let r = e::render(&input);
    e::check_handed_over(&r);
    e::check_json(&r);
    e::check_text(&r.text, false, &r.families);
    e::check_text(&r.openmetrics, true, &r.families);
    e::dump(data, &r);
});
