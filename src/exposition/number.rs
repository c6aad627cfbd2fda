//! Numbers as the exposition formats print them, shared by text, OpenMetrics and JSON,
//! and [`Out`], the byte buffer every encoder appends to.

use std::fmt;

/// What an encoder appends to. The exposition is bytes (`Vec<u8>`: a binary format
/// writes into the same buffer); a `String` takes the text encoders' output too, for a
/// label prefix kept between lines and for tests that read what they wrote.
pub trait Out {
    fn put_str(&mut self, s: &str);
    fn put_char(&mut self, c: char);
    fn put_fmt(&mut self, args: fmt::Arguments<'_>);
}

impl Out for Vec<u8> {
    #[inline]
    fn put_str(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }

    #[inline]
    fn put_char(&mut self, c: char) {
        if c.is_ascii() {
            self.push(c as u8);
        } else {
            self.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
    }

    fn put_fmt(&mut self, args: fmt::Arguments<'_>) {
        // Writing into a `Vec` cannot fail.
        let _ = std::io::Write::write_fmt(self, args);
    }
}

impl Out for String {
    #[inline]
    fn put_str(&mut self, s: &str) {
        self.push_str(s);
    }

    #[inline]
    fn put_char(&mut self, c: char) {
        self.push(c);
    }

    fn put_fmt(&mut self, args: fmt::Arguments<'_>) {
        // Writing into a `String` cannot fail.
        let _ = fmt::Write::write_fmt(self, args);
    }
}

pub fn write_u64(out: &mut impl Out, n: u64) {
    out.put_str(itoa::Buffer::new().format(n));
}

/// A float as Prometheus parsers read it: `+Inf`, `-Inf`, `NaN`, integers without a
/// fraction, otherwise the shortest representation that round-trips.
pub fn write_f64(out: &mut impl Out, v: f64) {
    if v.is_nan() {
        out.put_str("NaN");
    } else if v.is_infinite() {
        out.put_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        if v < 0.0 {
            out.put_char('-');
        }
        write_u64(out, v.abs() as u64);
    } else if v.abs() >= 1e-4 && v.abs() < 1e15 {
        out.put_fmt(format_args!("{v}"));
    } else {
        out.put_fmt(format_args!("{v:e}"));
    }
}

/// Milliseconds as seconds, the shortest way (`1700000000.12`, `1234`): what
/// `write_f64(ms / 1000)` prints, without formatting a float.
pub fn write_ms_as_seconds(out: &mut impl Out, ms: u64) {
    write_u64(out, ms / 1000);
    let frac = ms % 1000;
    if frac != 0 {
        let digits = [
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ];
        let len = if frac % 100 == 0 {
            1
        } else if frac % 10 == 0 {
            2
        } else {
            3
        };
        out.put_char('.');
        out.put_str(std::str::from_utf8(&digits[..len]).unwrap_or("0"));
    }
}

/// A number as OpenMetrics wants `le` and `quantile` label values ("Canonical
/// Numbers"): Go's `%g` with `.0` appended when there is neither a point nor an
/// exponent: `0.005`, `1.0`, `10.0`, `100000.0`, `1e+06`, `1e-05`, `+Inf`.
pub fn write_canonical(out: &mut impl Out, v: f64) {
    if v.is_nan() {
        out.put_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.put_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if v == 0.0 {
        out.put_str("0.0");
        return;
    }
    // Shortest round-trip digits, as Go's `%g` uses them.
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        out.put_fmt(format_args!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        ));
    } else {
        // Once per bucket bound of a family, not per series.
        let plain = v.to_string();
        out.put_str(&plain);
        if !plain.contains('.') {
            out.put_str(".0");
        }
    }
}
