//! The protobuf writer (with native histograms) over the `exposition` target's inputs:
//! what it wrote, decoded by prost, is what the text writers were handed; see
//! `ngx_prometheus_fuzz::exposition::check_protobuf`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ngx_prometheus_fuzz::exposition::{self as e, Input};

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let r = e::render(&input);
    e::check_protobuf(&r);
});
