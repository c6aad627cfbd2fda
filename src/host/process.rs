//! What a worker process uses, read from the kernel: memory, CPU time, file
//! descriptors. Each worker samples itself (a process can always read its own
//! `/proc/self`, even when nginx made it non-dumpable after dropping root) and writes
//! the sample into the zone, labelled by its worker number, so any worker's scrape
//! shows them all.

use std::time::{SystemTime, UNIX_EPOCH};

/// One reading of the calling process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    pub resident_bytes: f64,
    pub virtual_bytes: f64,
    /// User plus system time.
    pub cpu_seconds: f64,
    pub open_fds: f64,
    /// The soft `RLIMIT_NOFILE`.
    pub max_fds: f64,
}

/// Reads the calling process; a figure the kernel does not give stays 0.
pub fn sample() -> Sample {
    let page = page_size();
    let (virtual_pages, resident_pages) = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| parse_statm(&s))
        .unwrap_or((0, 0));
    Sample {
        resident_bytes: (resident_pages * page) as f64,
        virtual_bytes: (virtual_pages * page) as f64,
        cpu_seconds: cpu_seconds(),
        open_fds: std::fs::read_dir("/proc/self/fd").map_or(0.0, |d| d.count() as f64),
        max_fds: max_fds(),
    }
}

/// `size resident ...` in pages.
fn parse_statm(s: &str) -> Option<(u64, u64)> {
    let mut it = s.split_whitespace().map(|w| w.parse::<u64>().ok());
    Some((it.next()??, it.next()??))
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given and touches nothing else.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return 0.0;
        }
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn max_fds() -> f64 {
    // SAFETY: getrlimit fills the struct it is given.
    let lim = unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0.0;
        }
        lim
    };
    if lim.rlim_cur == libc::RLIM_INFINITY {
        f64::INFINITY
    } else {
        lim.rlim_cur as f64
    }
}

/// Seconds since the epoch, with the fraction.
pub fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let a = sample();
        assert!(a.resident_bytes > 0.0 && a.virtual_bytes >= a.resident_bytes);
        let f = std::fs::File::open("/proc/self/statm").unwrap();
        let b = sample();
        assert!(b.open_fds >= 4.0, "{b:?}"); // stdio and the file above
        assert!(b.max_fds >= b.open_fds);
        drop(f);
        // Burn a little CPU: the counter moves forward.
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed().as_millis() < 30 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        assert!(x != 1);
        assert!(sample().cpu_seconds > a.cpu_seconds);
    }

    #[test]
    fn parses_statm() {
        assert_eq!(parse_statm("2048 512 100 1 0 300 0\n"), Some((2048, 512)));
        assert_eq!(parse_statm("garbage"), None);
    }
}
