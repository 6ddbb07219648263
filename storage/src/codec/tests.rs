//! One round-trip checker run over every encoding; cases named for what they catch.

use proptest::prelude::*;

use super::*;

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;
const ALL: [Encoding; 4] = [Encoding::Gorilla, Encoding::Decimal, Encoding::Constant, Encoding::FloatBits];

/// Encodes with every applicable encoding (and the automatic choice) and checks a bit-exact round trip.
/// Returns the encodings that applied.
fn check(ts: &[i64], vals: &[f64]) -> Vec<Encoding> {
    // Every test writes what a cluster of this build writes: grid timestamps allowed (never turned off here).
    allow_grid_timestamps(true);
    let mut applied = Vec::new();
    let mut candidates: Vec<(Option<Encoding>, Vec<u8>)> = vec![(None, encode_chunk(ts, vals))];
    for enc in ALL {
        if let Some(c) = encode_chunk_with(enc, ts, vals) {
            applied.push(enc);
            candidates.push((Some(enc), c));
        }
    }
    assert!(applied.contains(&Encoding::Gorilla), "Gorilla takes anything");
    assert!(applied.contains(&Encoding::FloatBits), "so do the bit patterns");
    // encode_chunk tries FloatBits only for values that are not exact decimals.
    let decimal = applied.contains(&Encoding::Decimal);
    let smallest = candidates[1..]
        .iter()
        .filter(|c| !(decimal && c.0 == Some(Encoding::FloatBits)))
        .map(|c| c.1.len())
        .min()
        .unwrap();
    assert_eq!(candidates[0].1.len(), smallest, "encode_chunk keeps the smallest");
    for (enc, c) in &candidates {
        let h = chunk_header(c).unwrap();
        assert_eq!((h.count as usize, h.min_ts, h.max_ts), (ts.len(), ts[0], ts[ts.len() - 1]), "{enc:?} header");
        if let Some(e) = enc {
            assert_eq!(h.encoding, *e);
        }
        let (mut t, mut v) = (vec![7], vec![7.0]); // decoding appends
        decode_chunk(c, &mut t, &mut v).unwrap_or_else(|e| panic!("{enc:?}: {e}"));
        assert_eq!(&t[1..], ts, "{enc:?} timestamps");
        let bits = |x: &[f64]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&v[1..]), bits(vals), "{enc:?} values");
    }
    // The head appender builds the same samples incrementally, readable at any point.
    let mut h = HeadAppender::new();
    for (i, (&t, &v)) in ts.iter().zip(vals).enumerate() {
        h.append(t, v);
        if i == ts.len() / 2 {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            h.decode_into(&mut a, &mut b);
            assert_eq!(a, &ts[..=i]);
        }
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    h.decode_into(&mut a, &mut b);
    assert_eq!(a, ts);
    assert_eq!(b.iter().map(|f| f.to_bits()).collect::<Vec<_>>(), vals.iter().map(|f| f.to_bits()).collect::<Vec<_>>());
    assert_eq!((h.first_ts(), h.last_ts(), h.len()), (Some(ts[0]), Some(ts[ts.len() - 1]), ts.len()));
    // Sealing a head reuses its stream as the Gorilla candidate: the same chunk, byte for byte.
    assert_eq!(encode_chunk_from(ts, vals, Some(h.stream())), candidates[0].1, "sealed from the head's stream");
    applied
}

fn regular(n: usize) -> Vec<i64> {
    (0..n as i64).map(|i| 1_700_000_000_000 + i * 10_000).collect()
}

#[test]
fn single_and_two_samples() {
    assert_eq!(check(&[5], &[1.5]), ALL.to_vec());
    check(&[5, 6], &[1.5, -2.25]);
}

#[test]
fn max_count() {
    let ts: Vec<i64> = (0..MAX_SAMPLES as i64).collect();
    let vals: Vec<f64> = (0..MAX_SAMPLES).map(|i| (i % 977) as f64).collect();
    check(&ts, &vals);
}

#[test]
fn regular_and_jittered_timestamps() {
    check(&regular(120), &vec![3.0; 120]);
    let jitter: Vec<i64> = regular(120).iter().enumerate().map(|(i, t)| t + ((i * 37) % 11) as i64 - 5).collect();
    check(&jitter, &(0..120).map(|i| i as f64 * 0.5).collect::<Vec<_>>());
}

/// Scrape times: a 2 s tick from a phase, each sample a few ms late (a deterministic pseudo-random jitter).
fn scraped(n: usize, max_late: u64) -> Vec<i64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n as i64)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1_700_000_000_123 + i * 2_000 + (x % (max_late + 1)) as i64
        })
        .collect()
}

fn ts_mode(c: &[u8]) -> u8 {
    let (h, pos) = header_and_payload(c).unwrap();
    match h.encoding {
        Encoding::Constant => c[pos + 8],
        Encoding::Decimal => c[pos + 2],
        Encoding::FloatBits => c[pos + 1],
        Encoding::Gorilla => panic!("Gorilla interleaves its own codes"),
    }
}

#[test]
fn jittered_scrapes_take_grid_timestamps() {
    for (late, max_bits) in [(3, 3.5), (12, 5.5), (200, 10.5)] {
        let ts = scraped(360, late);
        let c = check(&ts, &vec![1.0; 360]);
        assert!(c.contains(&Encoding::Constant));
        let chunk = encode_chunk(&ts, &vec![1.0; 360]);
        assert_eq!(ts_mode(&chunk), TS_GRID, "up to {late} ms late");
        let bits = (chunk.len() - 8 - 1 - 10) as f64 * 8.0 / 360.0;
        let dod = dod_bits(&ts) as f64 / 359.0;
        println!("up to {late} ms late: {bits:.2} bits/timestamp, delta-of-delta {dod:.2}");
        assert!(bits <= max_bits, "{bits} bits per timestamp, up to {late} ms late");
    }
    // Values that change ride on the same timestamps.
    let ts = scraped(360, 5);
    check(&ts, &(0..360).map(|i| 1e6 + i as f64 * 3.0).collect::<Vec<_>>());
    check(&ts, &(0..360).map(|i| (i as f64).sin()).collect::<Vec<_>>());
}

#[test]
fn grid_timestamps_survive_gaps_outliers_and_short_chunks() {
    let vals = |n: usize| vec![2.5; n];
    // A missed scrape: the line no longer fits the samples after it; whichever mode wins must round-trip.
    let mut gap = scraped(200, 4);
    gap.retain(|t| !(1_700_000_100_000..1_700_000_104_000).contains(t));
    check(&gap, &vals(gap.len()));
    // One sample hours off the line: its residual takes the escape.
    let mut far: Vec<i64> = scraped(100, 2);
    far.iter_mut().skip(50).for_each(|t| *t += 3_600_000);
    check(&far, &vals(100));
    let plan = grid::plan(&far).unwrap();
    let mut w = bits::BitWriter::new();
    grid::write(&mut w, &far, &plan);
    assert_eq!(w.bit_len() as u64, plan.bits, "the plan counts the bits written");
    // Three samples (one residual), and extremes of the timestamp range.
    check(&[10, 17, 30], &vals(3));
    check(&[i64::MIN, 0, i64::MAX], &vals(3));
    check(&[i64::MIN, i64::MIN + 1, i64::MIN + 5, i64::MAX - 1, i64::MAX], &vals(5));
}

#[test]
fn int_bits_counts_what_write_int_writes() {
    for v in [0i64, 1, -1, 63, -64, 64, 2047, -2048, 5000, 1 << 19, -(1 << 40), i64::MAX, i64::MIN] {
        let mut w = bits::BitWriter::new();
        gorilla::write_int(&mut w, v);
        assert_eq!(w.bit_len() as u64, gorilla::int_bits(v), "{v}");
    }
}

#[test]
fn huge_and_negative_timestamps_do_not_overflow() {
    check(&[i64::MIN + 1, -5, 0, i64::MAX], &[1.0, 2.0, 3.0, 4.0]);
    check(&[i64::MIN, i64::MAX], &[0.0, 0.0]);
    check(&[-1_000_000, -999_999, -10], &[1.0, 1.0, 1.0]);
}

#[test]
fn special_floats_round_trip_bit_for_bit() {
    let specials = [
        f64::NAN,
        f64::from_bits(STALE_NAN),
        f64::from_bits(0x7ff8_dead_beef_0001),
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        f64::MIN_POSITIVE / 3.0,
        f64::MIN,
        f64::MAX,
        f64::EPSILON,
    ];
    let applied = check(&regular(specials.len()), &specials);
    assert_eq!(applied, vec![Encoding::Gorilla, Encoding::FloatBits], "only bit-level encodings hold NaN, inf, -0.0");
    // -0.0 alone must not become 0.0 in Decimal.
    assert!(!check(&[1, 2], &[-0.0, -0.0]).contains(&Encoding::Decimal));
    check(&regular(3), &[f64::from_bits(STALE_NAN); 3]);
}

#[test]
fn counters_and_gauges_pick_decimal() {
    let counter: Vec<f64> = (0..120).map(|i| 1_000_000.0 + i as f64 * 250.0).collect();
    assert!(check(&regular(120), &counter).contains(&Encoding::Decimal));
    let gauge: Vec<f64> = (0..120).map(|i| ((i * 7919) % 10_000) as f64 / 100.0).collect();
    assert!(check(&regular(120), &gauge).contains(&Encoding::Decimal));
    let reset: Vec<f64> = (0..120).map(|i| if i < 60 { i as f64 * 10.0 } else { (i - 60) as f64 }).collect();
    check(&regular(120), &reset);
    // Counters growing by varying amounts take the frame-of-reference mode: ~log2(range) bits per value.
    let mut c = 1e9;
    let varying: Vec<f64> = (0..360)
        .map(|i| {
            c += ((i * 7919) % 101) as f64;
            c
        })
        .collect();
    let enc = encode_chunk(&regular(360), &varying);
    // Delta codes would need 15 bits per delta below 101 (12-bit bucket + prefix); 7 bits fit them.
    assert!(enc.len() < 360, "{} bytes for 360 deltas below 101: fewer than 8 bits each", enc.len());
    check(&regular(360), &varying);
    // Extreme deltas that do not fit the frame of reference still round-trip in another mode.
    check(&[1, 2, 3], &[-4.0e15, 4.0e15, -4.0e15]);
}

#[test]
fn inexact_decimals_refused_by_decimal() {
    let v = [0.1 + 0.2, 1.0 / 3.0, 2.0];
    assert_eq!(check(&regular(3), &v), vec![Encoding::Gorilla, Encoding::FloatBits]);
    assert!(encode_chunk_with(Encoding::Decimal, &regular(3), &v).is_none());
    assert!(encode_chunk_with(Encoding::Decimal, &regular(2), &[9.1e15, 1.0]).is_none(), "mantissa past 2^53");
}

#[test]
fn constant_series() {
    assert_eq!(chunk_header(&encode_chunk(&regular(120), &vec![42.5; 120])).unwrap().encoding, Encoding::Constant);
}

/// Bits per sample on shapes that matter, printed for the record and bounded to catch regressions.
#[test]
fn bits_per_sample() {
    let n = 120;
    let ts = regular(n);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut walk = 50.0;
    let random_walk: Vec<f64> = (0..n)
        .map(|_| {
            walk = (walk + rnd() * 2.0 - 1.0f64).clamp(0.0, 100.0);
            walk
        })
        .collect();
    let mut g = 50.0;
    let gauge: Vec<f64> = (0..n)
        .map(|_| {
            if rnd() < 0.3 {
                g = ((g + rnd() * 2.0 - 1.0) * 100.0f64).round() / 100.0;
            }
            g
        })
        .collect();
    let counter: Vec<f64> = (0..n).map(|i| 5_000_000.0 + i as f64 * 100.0).collect();
    let cases = [
        ("constant", vec![7.0; n], 1.5),
        ("steady counter", counter, 3.0),
        ("2-decimal gauge", gauge.clone(), 8.0),
        ("float random walk", random_walk.clone(), 64.0),
    ];
    for (name, vals, max_bits) in cases {
        let c = encode_chunk(&ts, &vals);
        let bps = c.len() as f64 * 8.0 / n as f64;
        println!("{name:>18}: {bps:6.2} bits/sample ({:?})", chunk_header(&c).unwrap().encoding);
        assert!(bps <= max_bits, "{name}: {bps} bits/sample");
    }
    let gorilla = encode_chunk_with(Encoding::Gorilla, &ts, &gauge).unwrap().len();
    let dec = encode_chunk_with(Encoding::Decimal, &ts, &gauge).unwrap().len();
    assert!(dec < gorilla, "decimal {dec} bytes beats gorilla {gorilla} bytes on a 2-decimal gauge");
    let gorilla = encode_chunk_with(Encoding::Gorilla, &ts, &random_walk).unwrap().len();
    let bits = encode_chunk_with(Encoding::FloatBits, &ts, &random_walk).unwrap().len();
    println!("float random walk: Gorilla {gorilla} bytes, FloatBits {bits} bytes");
    // The same walk moved to straddle 64: below it each step spans twice as many doubles, which frame of
    // reference would pay on every sample; interval positions pay it on the samples below only.
    let lowest = random_walk.iter().copied().fold(f64::INFINITY, f64::min);
    let straddling: Vec<f64> = random_walk.iter().map(|v| v - lowest + 63.5).collect();
    let c = encode_chunk_with(Encoding::FloatBits, &ts, &straddling).unwrap();
    assert_eq!(c[header_and_payload(&c).unwrap().1], 3, "a walk across a binade takes interval positions");
    let flat = mantissa_chunk(
        Encoding::FloatBits,
        &ts,
        &TsPlan::new(&ts),
        &[],
        &straddling.iter().map(|v| v.to_bits() as i64).collect::<Vec<_>>(),
        &[2],
        true,
    );
    println!("walk across 64: FloatBits interval {} bytes, frame of reference {} bytes", c.len(), flat.len());
    assert!(c.len() < flat.len());
    assert!(bits < gorilla, "bit-pattern deltas ({bits} bytes) beat XOR ({gorilla} bytes) on a full-precision walk");
}

#[test]
fn every_truncation_and_bit_flip_is_an_error_or_consistent() {
    let vals: Vec<f64> = (0..50).map(|i| (i * 13 % 7) as f64 * 0.25).collect();
    for enc in ALL {
        let Some(c) = encode_chunk_with(enc, &regular(50), if enc == Encoding::Constant { &[1.0; 50] } else { &vals })
        else {
            continue;
        };
        for cut in 0..c.len() {
            let (mut t, mut v) = (Vec::new(), Vec::new());
            if decode_chunk(&c[..cut], &mut t, &mut v).is_ok() {
                assert_eq!(t.len(), 50, "a truncated chunk that decodes must still hold every sample");
            } else {
                assert!(t.is_empty() && v.is_empty(), "outputs restored on error");
            }
        }
        for i in 0..c.len() * 8 {
            let mut m = c.clone();
            m[i / 8] ^= 1 << (i % 8);
            let (mut t, mut v) = (Vec::new(), Vec::new());
            let _ = decode_chunk(&m, &mut t, &mut v);
            let _ = chunk_header(&m);
            assert_eq!(t.len(), v.len());
        }
    }
}

fn samples() -> impl Strategy<Value = (Vec<i64>, Vec<f64>)> {
    (any::<i64>(), proptest::collection::vec((1i64..1_000_000_000, any::<u64>()), 1..300)).prop_map(|(start, steps)| {
        let mut t = start / 2;
        let mut ts = Vec::new();
        let mut vals = Vec::new();
        for (d, bits) in steps {
            ts.push(t);
            vals.push(f64::from_bits(bits));
            t = t.saturating_add(d);
            if t == *ts.last().unwrap() {
                break;
            }
        }
        (ts, vals)
    })
}

#[test]
fn rounding_to_significant_digits() {
    use decimal::round_significant as r;
    assert_eq!(r(53.29482847162934, 12), 53.2948284716);
    assert_eq!(r(9.999999999999, 3), 10.0);
    assert_eq!(r(-0.000123456789, 3), -0.000123);
    assert_eq!(r(123_456_789.0, 3), 123_000_000.0);
    assert_eq!(r(1.5e15, 1), 2e15);
    assert_eq!(r(1.5e20, 1), 1.5e20, "a unit above 10^15: kept whole");
    assert_eq!(r(0.5, 1), 0.5);
    for v in [0.0, -0.0, f64::INFINITY, f64::NAN, 1e-300, 53.29482847162934] {
        assert_eq!(r(v, 17).to_bits(), v.to_bits(), "17 digits keep {v}");
    }
    assert!(r(f64::NAN, 4).is_nan());
    assert_eq!(r(1e-300, 4), 1e-300, "past the exponent table the value stays whole");
    // A chunk of rounded full-precision values takes the Decimal encoding, and is smaller.
    let walk: Vec<f64> = (0..360).map(|i| 50.0 + (i as f64 * 0.7).sin() * 20.0 + i as f64 / 7.0).collect();
    let rounded: Vec<f64> = walk.iter().map(|&v| r(v, 12)).collect();
    let ts = regular(walk.len());
    let (full, short) = (encode_chunk(&ts, &walk), encode_chunk(&ts, &rounded));
    assert_eq!(short[0], Encoding::Decimal as u8);
    assert!(short.len() * 5 < full.len() * 4, "{} vs {} bytes", short.len(), full.len());
    check(&ts, &rounded);
}

proptest! {
    #[test]
    fn prop_round_trip_jittered_scrapes(
        start in -(1i64 << 60)..(1i64 << 60),
        interval in 2i64..120_000,
        late in proptest::collection::vec(0u32..u32::MAX, 3..400),
        max_late_pct in 0u32..100,
        gap_at in proptest::option::of(1usize..400),
        vals in proptest::collection::vec(any::<u64>(), 400),
    ) {
        // A tick every `interval` ms, each sample up to `max_late_pct`% of it late (so timestamps increase),
        // and maybe one long gap: what grid timestamps are for, and where they must give way.
        let max_late = (interval - 1) * max_late_pct as i64 / 100;
        let mut ts: Vec<i64> = late
            .iter()
            .enumerate()
            .map(|(i, l)| start + i as i64 * interval + (*l as i64 % (max_late + 1)))
            .collect();
        if let Some(g) = gap_at.filter(|g| *g < ts.len()) {
            ts[g..].iter_mut().for_each(|t| *t += 3_600_000);
        }
        let vals: Vec<f64> = vals[..ts.len()].iter().map(|b| f64::from_bits(*b)).collect();
        check(&ts, &vals);
        check(&ts, &vec![1.5; ts.len()]);
    }

    #[test]
    fn prop_round_trip_any_samples((ts, vals) in samples()) {
        check(&ts, &vals);
    }

    #[test]
    fn prop_round_trip_decimal_like((ts, _) in samples(), ms in proptest::collection::vec(-1_000_000i64..1_000_000, 300), e in 0u8..4) {
        let vals: Vec<f64> = ms[..ts.len()].iter().map(|&m| decimal::value(m, e)).collect();
        let applied = check(&ts, &vals);
        prop_assert!(applied.contains(&Encoding::Decimal));
    }

    #[test]
    fn prop_round_trip_float_walks(start in -1e3f64..1e3, scale in -1000i32..1000, steps in proptest::collection::vec(-1.0f64..1.0, 2..300)) {
        // Walks at every scale, subnormal to near overflow, crossing zero and binades: the interval mode
        // must give back every value bit for bit whether or not the automatic choice takes it.
        let scale = 2f64.powi(scale);
        let mut x = start * scale;
        let vals: Vec<f64> = steps.iter().map(|s| { x += s * scale; x }).collect();
        prop_assume!(vals.iter().all(|v| v.is_finite()));
        check(&regular(vals.len()), &vals);
        if let Some(plan) = interval::plan(&vals) {
            let mut w = bits::BitWriter::new();
            interval::write(&mut w, &vals, &plan);
            prop_assert_eq!(w.bit_len() as u64, plan.bits);
            let mut back = Vec::new();
            interval::read(&mut bits::BitReader::new(w.bytes()), vals.len(), |v| back.push(v.to_bits())).unwrap();
            prop_assert_eq!(back, vals.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn prop_rounding_keeps_the_digits_asked_for(v in -1e25f64..1e25, scale in -12i32..12, digits in 1u8..16) {
        // Within half a unit of the last kept digit (plus float error), idempotent, and exact as a decimal.
        let v = v * 10f64.powi(scale);
        let r = decimal::round_significant(v, digits);
        prop_assert_eq!(decimal::round_significant(r, digits).to_bits(), r.to_bits());
        if r.to_bits() != v.to_bits() {
            let x = v.abs().log10().floor() as i32;
            let unit = 10f64.powi(x + 1 - digits as i32);
            prop_assert!((r - v).abs() <= unit * 0.5000001 + v.abs() * 4.0 * f64::EPSILON, "{v} -> {r} ({digits} digits)");
            if r.abs() < 1e15 {
                prop_assert!(decimal::fit(&[r]).is_some());
            }
        }
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let (mut t, mut v) = (Vec::new(), Vec::new());
        let _ = decode_chunk(&bytes, &mut t, &mut v);
        let _ = chunk_header(&bytes);
        prop_assert_eq!(t.len(), v.len());
    }

    #[test]
    fn prop_arbitrary_payload_after_valid_header_never_panics(tag in 1u8..5, count in 1u64..70_000, payload in proptest::collection::vec(any::<u8>(), 0..100)) {
        let mut b = vec![tag];
        bits::put_uvarint(&mut b, count);
        bits::put_uvarint(&mut b, 12345);
        bits::put_uvarint(&mut b, 99);
        b.extend(payload);
        let (mut t, mut v) = (Vec::new(), Vec::new());
        let _ = decode_chunk(&b, &mut t, &mut v);
    }
}
