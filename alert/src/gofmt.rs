//! Go's number formatting and a `printf` subset, so templates render `{{ $value }}`, `{{ humanize $value }}`
//! and `{{ printf "%.2f" $value }}` exactly as Prometheus does.
//!
//! Digits come from Rust's exact float formatting (`{:e}` shortest, `{:.Ne}` rounded half to even on exact
//! ties, as Go's strconv does); the layout rules (`%g` switching to exponent form, `e+06` exponents, `+Inf`)
//! follow Go's `strconv.FormatFloat` and `fmt`.

use std::fmt::Write;

/// A template value: Go's `string` or `float64`.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Str(String),
    Num(f64),
}

impl Arg {
    /// How `{{ x }}` prints it (Go's `%v`).
    pub fn render(&self) -> String {
        match self {
            Arg::Str(s) => s.clone(),
            Arg::Num(v) => format_g(*v, None),
        }
    }

    fn go_type(&self) -> &'static str {
        match self {
            Arg::Str(_) => "string",
            Arg::Num(_) => "float64",
        }
    }
}

/// Decimal digits (no trailing zeros, at least one) and the decimal point position: |v| = 0.d1d2... × 10^dp.
/// `sig` None: the shortest digits that round-trip; Some(n): rounded to n significant digits.
fn digits(v: f64, sig: Option<usize>) -> (Vec<u8>, i32) {
    let s = match sig {
        None => format!("{:e}", v.abs()),
        Some(n) => format!("{:.*e}", n.max(1) - 1, v.abs()),
    };
    let (mant, exp) = s.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("exponent");
    let mut d: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while d.len() > 1 && d.last() == Some(&b'0') {
        d.pop();
    }
    (d, exp + 1)
}

fn special(v: f64, plus: bool) -> Option<String> {
    if v.is_nan() {
        Some(if plus { "+NaN".into() } else { "NaN".into() })
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf".into() } else { "-Inf".into() })
    } else {
        None
    }
}

fn sign(v: f64, plus: bool) -> &'static str {
    if v.is_sign_negative() {
        "-"
    } else if plus {
        "+"
    } else {
        ""
    }
}

/// `%e` layout: `d.ddde±XX` with `prec` digits after the point.
fn layout_e(d: &[u8], dp: i32, prec: usize, upper: bool) -> String {
    let mut s = String::new();
    s.push(d[0] as char);
    if prec > 0 {
        s.push('.');
        for i in 1..=prec {
            s.push(*d.get(i).unwrap_or(&b'0') as char);
        }
    }
    let exp = if d == b"0" { 0 } else { dp - 1 };
    s.push(if upper { 'E' } else { 'e' });
    s.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(s, "{:02}", exp.abs());
    s
}

/// `%f` layout with `prec` digits after the point.
fn layout_f(d: &[u8], dp: i32, prec: usize) -> String {
    let digit = |i: i32| if i >= 0 && (i as usize) < d.len() { d[i as usize] as char } else { '0' };
    let mut s = String::new();
    if dp > 0 {
        for i in 0..dp {
            s.push(digit(i));
        }
    } else {
        s.push('0');
    }
    if prec > 0 {
        s.push('.');
        for i in 0..prec as i32 {
            s.push(digit(dp + i));
        }
    }
    s
}

/// Go's `%g` (`prec` Some) or `%v` (None, shortest) for a float64.
pub fn format_g(v: f64, prec: Option<usize>) -> String {
    format_g_flags(v, prec, false, false)
}

fn format_g_flags(v: f64, prec: Option<usize>, plus: bool, upper: bool) -> String {
    if let Some(s) = special(v, plus) {
        return s;
    }
    let sg = sign(v, plus);
    if v == 0.0 {
        return format!("{sg}0");
    }
    let (d, dp) = digits(v, prec.map(|p| p.max(1)));
    let nd = d.len() as i32;
    let shortest = prec.is_none();
    let mut p = prec.map(|p| p.max(1) as i32).unwrap_or(nd);
    let mut eprec = p;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = dp - 1;
    if exp < -4 || exp >= eprec {
        if p > nd {
            p = nd;
        }
        return format!("{sg}{}", layout_e(&d, dp, (p - 1) as usize, upper));
    }
    if p > dp {
        p = nd;
    }
    format!("{sg}{}", layout_f(&d, dp, (p - dp).max(0) as usize))
}

/// Go's `%.Nf` (`%f` is `%.6f`).
pub fn format_f(v: f64, prec: usize, plus: bool) -> String {
    if let Some(s) = special(v, plus) {
        return s;
    }
    let s = format!("{:.*}", prec, v.abs());
    format!("{}{s}", sign(v, plus))
}

/// Go's `%.Ne` (`%e` is `%.6e`).
pub fn format_e(v: f64, prec: usize, plus: bool, upper: bool) -> String {
    if let Some(s) = special(v, plus) {
        return s;
    }
    if v == 0.0 {
        return format!("{}{}", sign(v, plus), layout_e(b"0", 1, prec, upper));
    }
    let (d, dp) = digits(v, Some(prec + 1));
    format!("{}{}", sign(v, plus), layout_e(&d, dp, prec, upper))
}

struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %q %d %f %F %e %E %g %G %x %X %%`, with flags
/// `- + 0 space`, width and precision. Mismatches print like Go: `%!d(string=abc)`, `%!f(MISSING)`.
pub fn sprintf(format: &str, args: &[Arg]) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec { minus: false, plus: false, zero: false, space: false, width: None, prec: None };
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '0' => spec.zero = true,
                ' ' => spec.space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        let num = |chars: &mut std::iter::Peekable<std::str::Chars>| {
            let mut n: Option<usize> = None;
            while let Some(&d) = chars.peek() {
                let Some(v) = d.to_digit(10) else { break };
                n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(v as usize).min(10_000));
                chars.next();
            }
            n
        };
        spec.width = num(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(num(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        let (body, numeric) = match format_one(verb, &spec, arg) {
            Some(b) => b,
            None => {
                let _ = write!(out, "%!{verb}({}={})", arg.go_type(), arg.render());
                continue;
            }
        };
        out.push_str(&pad(body, &spec, numeric));
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next..].iter().map(|a| format!("{}={}", a.go_type(), a.render())).collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

fn format_one(verb: char, spec: &Spec, arg: &Arg) -> Option<(String, bool)> {
    let plus = spec.plus;
    let space = |s: String| if spec.space && !s.starts_with(['-', '+']) { format!(" {s}") } else { s };
    Some(match (verb, arg) {
        ('v', Arg::Num(v)) => (space(format_g_flags(*v, None, plus, false)), true),
        ('v' | 's', Arg::Str(s)) => {
            let s = match spec.prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            };
            (s, false)
        }
        ('q', Arg::Str(s)) => (crate::labels::quote(s), false),
        ('d', Arg::Num(v)) if v.fract() == 0.0 && v.abs() < 9.2e18 => {
            let i = *v as i64;
            let s = if plus && i >= 0 { format!("+{i}") } else { i.to_string() };
            (space(s), true)
        }
        ('f' | 'F', Arg::Num(v)) => (space(format_f(*v, spec.prec.unwrap_or(6), plus)), true),
        ('e' | 'E', Arg::Num(v)) => (space(format_e(*v, spec.prec.unwrap_or(6), plus, verb == 'E')), true),
        ('g' | 'G', Arg::Num(v)) => (space(format_g_flags(*v, spec.prec, plus, verb == 'G')), true),
        ('x' | 'X', Arg::Num(v)) if v.fract() == 0.0 && v.abs() < 9.2e18 => {
            let i = *v as i64;
            let s = if verb == 'x' { format!("{:x}", i.unsigned_abs()) } else { format!("{:X}", i.unsigned_abs()) };
            (if i < 0 { format!("-{s}") } else { s }, true)
        }
        ('x' | 'X', Arg::Str(s)) => {
            let s: String =
                s.bytes().map(|b| if verb == 'x' { format!("{b:02x}") } else { format!("{b:02X}") }).collect();
            (s, false)
        }
        _ => return None,
    })
}

fn pad(body: String, spec: &Spec, numeric: bool) -> String {
    let Some(width) = spec.width else { return body };
    let len = body.chars().count();
    if len >= width {
        return body;
    }
    let fill = width - len;
    if spec.minus {
        return format!("{body}{}", " ".repeat(fill));
    }
    let finite = !body.contains("Inf") && !body.contains("NaN");
    if spec.zero && numeric && finite {
        let (sg, rest) = match body.chars().next() {
            Some(c @ ('-' | '+' | ' ')) => (c.to_string(), &body[1..]),
            _ => (String::new(), &body[..]),
        };
        return format!("{sg}{}{rest}", "0".repeat(fill));
    }
    format!("{}{body}", " ".repeat(fill))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_v_is_gos_shortest_g() {
        let cases: [(f64, &str); 16] = [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (3.0, "3"),
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (1e6, "1e+06"),
            (1e21, "1e+21"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (v, want) in cases {
            assert_eq!(format_g(v, None), want, "{v}");
        }
    }

    #[test]
    fn percent_4g_matches_go() {
        let cases: [(f64, &str); 11] = [
            (1.5, "1.5"),
            (1000.0, "1000"),
            (12345.0, "1.234e+04"),
            (12355.0, "1.236e+04"),
            (100000.0, "1e+05"),
            (0.00001, "1e-05"),
            (0.000123456, "0.0001235"),
            (999.96, "1000"),
            (9999.6, "1e+04"),
            (2.0 / 3.0, "0.6667"),
            (-42.0, "-42"),
        ];
        for (v, want) in cases {
            assert_eq!(format_g(v, Some(4)), want, "{v}");
        }
    }

    #[test]
    fn printf_verbs() {
        let n = |v: f64| Arg::Num(v);
        let s = |v: &str| Arg::Str(v.into());
        let cases: Vec<(&str, Vec<Arg>, &str)> = vec![
            ("%.2f", vec![n(1.23456)], "1.23"),
            ("%.2f", vec![n(2.675)], "2.67"), // 2.675 is 2.67499999... in binary, as in Go
            ("%.0f", vec![n(0.5)], "0"),
            ("%f", vec![n(1.0)], "1.000000"),
            ("%8.3f|", vec![n(-1.5)], "  -1.500|"),
            ("%-8.1f|", vec![n(1.5)], "1.5     |"),
            ("%08.2f", vec![n(-3.5)], "-0003.50"),
            ("%+.1f", vec![n(2.0)], "+2.0"),
            ("%d", vec![n(42.0)], "42"),
            ("%05d", vec![n(42.0)], "00042"),
            ("%d", vec![n(1.5)], "%!d(float64=1.5)"),
            ("%e", vec![n(1234.5678)], "1.234568e+03"),
            ("%.2E", vec![n(0.000123)], "1.23E-04"),
            ("%g", vec![n(1e-7)], "1e-07"),
            ("%.3g", vec![n(1234.0)], "1.23e+03"),
            ("%v and %s", vec![n(0.25), s("x")], "0.25 and x"),
            ("%q", vec![s("a\"b")], "\"a\\\"b\""),
            ("%.3s", vec![s("abcdef")], "abc"),
            ("%5s|%-5s|", vec![s("ab"), s("cd")], "   ab|cd   |"),
            ("%x %X", vec![n(255.0), n(255.0)], "ff FF"),
            ("%x", vec![s("hi")], "6869"),
            ("100%%", vec![], "100%"),
            ("%s", vec![n(1.0)], "%!s(float64=1)"),
            ("%f", vec![s("abc")], "%!f(string=abc)"),
            ("%d %d", vec![n(1.0)], "1 %!d(MISSING)"),
            ("%d", vec![n(1.0), n(2.0)], "1%!(EXTRA float64=2)"),
            ("%f", vec![n(f64::INFINITY)], "+Inf"),
            ("%.2f", vec![n(f64::NAN)], "NaN"),
            ("%", vec![], "%!(NOVERB)"),
        ];
        for (f, args, want) in cases {
            assert_eq!(sprintf(f, &args), want, "{f}");
        }
    }

    proptest::proptest! {
        /// `%v` never loses information: the text parses back to the same float.
        #[test]
        fn shortest_g_round_trips(v in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            let s = format_g(v, None);
            proptest::prop_assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{}", s);
        }
    }
}
