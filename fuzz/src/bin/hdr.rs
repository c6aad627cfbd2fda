//! The HDR index math (`metrics::hdr`) agrees with the `hdrhistogram` crate for every
//! range, precision and value: the layout's slot count, each value's slot and the
//! slot's lowest and highest value.
#![no_main]

use hdrhistogram::{CreationError, Histogram};
use libfuzzer_sys::fuzz_target;
use ngx_prometheus::metrics::hdr::HdrLayout;
use std::cell::RefCell;

type Reference = Result<Histogram<u64>, CreationError>;

thread_local! {
    /// The crate's histogram for the last parameters: making one allocates all its
    /// counts (megabytes at 5 digits), and mutations mostly change the values only.
    static LAST: RefCell<Option<((u64, u8), Reference)>> = const { RefCell::new(None) };
}

fn check(highest: u64, sigfig: u8, values: [u64; 4], theirs: &Reference) {
    let (ours, theirs) = match (HdrLayout::new(highest, sigfig), theirs) {
        (Some(ours), Ok(theirs)) => (ours, theirs),
        // Both refuse the same parameters (highest below 2, precision above 5), and
        // the module also refuses precision 0 (families take 1 to 5 digits).
        (ours, theirs) => {
            let refused = theirs.is_err() || sigfig == 0;
            assert_eq!(ours.is_none(), refused, "highest {highest} sigfig {sigfig}");
            return;
        }
    };
    assert_eq!(ours.counts_len as usize, theirs.distinct_values());
    assert_eq!(ours, HdrLayout::unpack(ours.pack()));
    assert!(ours.counts_len.div_ceil(1 << ours.chunk_shift) <= 64);
    for v in values {
        // The store range-checks values against `highest` before indexing.
        let v = v.checked_rem(highest.wrapping_add(1)).unwrap_or(v);
        let i = ours.index(v);
        assert!(i < ours.counts_len as usize, "{v} -> slot {i}");
        assert_eq!(
            ours.value_at(i),
            theirs.lowest_equivalent(v),
            "lowest of {v}"
        );
        // The crate saturates `lowest + width` and ends the slot that holds u64::MAX at
        // u64::MAX - 1 (for any value but u64::MAX itself); the slot ends at u64::MAX.
        let top = theirs
            .lowest_equivalent(v)
            .checked_add(theirs.equivalent_range(v))
            .is_none();
        let want = if top {
            u64::MAX
        } else {
            theirs.highest_equivalent(v)
        };
        assert_eq!(ours.highest_at(i), want, "highest of {v}");
    }
}

fuzz_target!(|input: (u64, u8, [u64; 4])| {
    let (highest, sigfig, values) = input;
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if !matches!(&*last, Some((key, _)) if *key == (highest, sigfig)) {
            let h = Histogram::<u64>::new_with_bounds(1, highest, sigfig);
            *last = Some(((highest, sigfig), h));
        }
        if let Some((_, theirs)) = &*last {
            check(highest, sigfig, values, theirs);
        }
    });
});
