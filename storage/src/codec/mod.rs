//! Sample compression: chunks of (timestamp ms, f64) samples of one series.
//!
//! Every chunk starts with a header, then a payload whose layout the tag byte names, so the encoding can
//! change per chunk (and new ones can be added) without rewriting old data:
//!
//! | bytes                | field                                                   |
//! |----------------------|---------------------------------------------------------|
//! | 1                    | tag: 1 Gorilla, 2 Decimal, 3 Constant, 4 FloatBits      |
//! | uvarint              | sample count, 1..=65535                                 |
//! | uvarint (zigzag)     | first timestamp (ms)                                    |
//! | uvarint              | last - first timestamp                                  |
//! | ...                  | payload (below)                                         |
//!
//! - **Gorilla** (tag 1): the bit stream of [`gorilla::HeadAppender`]: first value raw (64 bits), then per
//!   sample a delta-of-delta timestamp code and an XOR value code.
//! - **Decimal** (tag 2): 1 byte exponent `e`, 1 byte mantissa mode (0 delta codes, 1 delta-of-delta codes,
//!   2 frame of reference), 1 byte timestamp mode, then a bit stream: the timestamp codes, the first mantissa
//!   raw (64 bits), then the deltas in the mode's form. Value = m / 10^e.
//! - **Constant** (tag 3): 8 bytes of value bits (big-endian), 1 byte timestamp mode, the timestamp codes.
//! - **FloatBits** (tag 4): the Decimal layout without the exponent byte, over the values' IEEE-754 bit
//!   patterns read as integers (value = `f64::from_bits(m)`). For full-precision gauges (ratios, random
//!   walks) the bit patterns of neighbouring values differ by about the change over the unit in the last
//!   place, so their deltas need fewer bits than Gorilla's XOR, which pays for every changed bit below the
//!   highest one and for its window codes. FloatBits has a mode of its own, 3 (*interval*,
//!   [`interval`]): each value is its position among the doubles within the chunk's smallest and largest
//!   change of the previous value, which costs each sample its own binade's bits.
//!
//! Timestamp mode 1 means *regular*: every delta equals span / (count - 1), so no codes follow; mode 0
//! means count-1 delta-of-delta codes; mode 2 (*grid*, [`grid`]) means each timestamp but the first and
//! last as its distance from the straight line between them, Rice-coded: real scrapes jitter by a few ms
//! around a fixed interval, which costs delta-of-delta 9 bits a sample and the grid 2-4. Mode 2 is written
//! only where the cluster reads it ([`allow_grid_timestamps`]).
//!
//! [`encode_chunk`] tries every encoding that can represent the data bit for bit and keeps the smallest.
//! Byte-level tables with examples: docs/format/chunk.md.

pub mod bits;
pub mod decimal;
pub mod gorilla;
pub mod grid;
pub mod interval;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};

use bits::{get_uvarint, put_uvarint, unzigzag, zigzag, BitReader, BitWriter};
pub use gorilla::HeadAppender;

/// Most samples in one chunk.
pub const MAX_SAMPLES: usize = u16::MAX as usize;

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CodecError {
    #[error("empty chunk")]
    Empty,
    #[error("unknown chunk encoding {0}")]
    UnknownEncoding(u8),
    #[error("chunk truncated at byte {offset}")]
    Truncated { offset: usize },
    #[error("corrupt chunk at byte {offset}: {what}")]
    Corrupt { offset: usize, what: &'static str },
    #[error("chunk columns disagree in length or timestamps")]
    LengthMismatch,
}

#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gorilla = 1,
    Decimal = 2,
    Constant = 3,
    FloatBits = 4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub encoding: Encoding,
    pub count: u32,
    pub min_ts: i64,
    pub max_ts: i64,
}

fn header(enc: Encoding, ts: &[i64], out: &mut Vec<u8>) {
    out.push(enc as u8);
    put_uvarint(out, ts.len() as u64);
    put_uvarint(out, zigzag(ts[0]));
    put_uvarint(out, ts[ts.len() - 1].wrapping_sub(ts[0]) as u64);
}

const TS_CODES: u8 = 0;
const TS_REGULAR: u8 = 1;
const TS_GRID: u8 = 2;

/// Whether chunks may use timestamp mode 2 (*grid*). A node turns it on once every member of its cluster
/// reads it (snapshot format 2, `crate::formats`): sealed chunks travel in snapshots, so a replica on an
/// older build must not be sent one it cannot decode. Reading is always on.
static GRID: AtomicBool = AtomicBool::new(false);

pub fn allow_grid_timestamps(on: bool) {
    GRID.store(on, Ordering::Relaxed);
}

pub fn grid_timestamps_allowed() -> bool {
    GRID.load(Ordering::Relaxed)
}

/// How a chunk's timestamps are written, decided once per chunk (every candidate encoding writes them).
#[derive(Debug, Clone, Copy)]
enum TsPlan {
    Regular,
    Codes,
    Grid(grid::Plan),
}

impl TsPlan {
    /// Regular when every delta is equal; else the smaller of delta-of-delta codes and (where allowed)
    /// grid residuals.
    fn new(ts: &[i64]) -> TsPlan {
        let d0 = ts.get(1).map(|t| t.wrapping_sub(ts[0]));
        if let Some(d0) = d0 {
            if ts.windows(2).all(|p| p[1].wrapping_sub(p[0]) == d0) {
                return TsPlan::Regular;
            }
        }
        if grid_timestamps_allowed() {
            if let Some(plan) = grid::plan(ts) {
                if plan.bits < dod_bits(ts) {
                    return TsPlan::Grid(plan);
                }
            }
        }
        TsPlan::Codes
    }

    /// Writes the timestamp mode byte to `out` and, unless regular, the codes to `w`.
    fn write(&self, out: &mut Vec<u8>, w: &mut BitWriter, ts: &[i64]) {
        match self {
            TsPlan::Regular => out.push(TS_REGULAR),
            TsPlan::Codes => {
                out.push(TS_CODES);
                let mut d = gorilla::Dod::new(ts[0]);
                for &t in &ts[1..] {
                    d.write(w, t);
                }
            }
            TsPlan::Grid(p) => {
                out.push(TS_GRID);
                grid::write(w, ts, p);
            }
        }
    }
}

/// The bits of the delta-of-delta codes of `ts`.
fn dod_bits(ts: &[i64]) -> u64 {
    let mut delta = 0i64;
    ts.windows(2)
        .map(|p| {
            let d = p[1].wrapping_sub(p[0]);
            let bits = gorilla::int_bits(d.wrapping_sub(delta));
            delta = d;
            bits
        })
        .sum()
}

fn read_timestamps(mode: u8, r: &mut BitReader, h: &ChunkHeader, out: &mut Vec<i64>) -> Option<()> {
    let n = h.count as usize;
    out.push(h.min_ts);
    match mode {
        TS_REGULAR if n >= 2 => {
            let span = h.max_ts.wrapping_sub(h.min_ts) as u64;
            let step = span / (n as u64 - 1);
            if step * (n as u64 - 1) != span || step == 0 {
                return None;
            }
            out.extend((1..n as u64).map(|i| h.min_ts.wrapping_add((i * step) as i64)));
        }
        TS_CODES => {
            let mut d = gorilla::Dod::new(h.min_ts);
            for _ in 1..n {
                out.push(d.read(r)?);
            }
        }
        TS_GRID if n >= 3 => grid::read(r, h, out)?,
        _ => return None,
    }
    Some(())
}

/// Encodes a chunk with the smallest encoding that represents it exactly. Timestamps must be strictly
/// increasing and as many as the values, 1..=65535 of them.
pub fn encode_chunk(ts: &[i64], vals: &[f64]) -> Vec<u8> {
    encode_chunk_from(ts, vals, None)
}

/// [`encode_chunk`] for samples whose Gorilla stream exists already (a head's [`HeadAppender::stream`], which
/// must hold exactly these samples): that stream is the Gorilla candidate instead of being encoded again.
pub fn encode_chunk_from(ts: &[i64], vals: &[f64], gorilla_stream: Option<&[u8]>) -> Vec<u8> {
    check_samples(ts, vals);
    let plan = TsPlan::new(ts);
    let mut best = match gorilla_stream {
        Some(stream) => {
            let mut c = Vec::with_capacity(16 + stream.len());
            header(Encoding::Gorilla, ts, &mut c);
            c.extend_from_slice(stream);
            c
        }
        None => encode_planned(Encoding::Gorilla, ts, vals, &plan).expect("Gorilla encodes any samples"),
    };
    let mut decimal = false;
    for enc in [Encoding::Constant, Encoding::Decimal] {
        if let Some(c) = encode_planned(enc, ts, vals, &plan) {
            decimal |= enc == Encoding::Decimal;
            if c.len() < best.len() {
                best = c;
            }
        }
    }
    // Values that are exact decimals are served by Decimal; only the others (full-precision floats) are worth
    // a FloatBits attempt, which costs a pass per mode.
    if !decimal {
        if let Some(c) = encode_planned(Encoding::FloatBits, ts, vals, &plan) {
            if c.len() < best.len() {
                best = c;
            }
        }
    }
    best
}

/// Encodes with one encoding; None when it cannot represent the samples bit for bit.
pub fn encode_chunk_with(enc: Encoding, ts: &[i64], vals: &[f64]) -> Option<Vec<u8>> {
    check_samples(ts, vals);
    encode_planned(enc, ts, vals, &TsPlan::new(ts))
}

fn check_samples(ts: &[i64], vals: &[f64]) {
    assert!(
        !ts.is_empty() && ts.len() == vals.len() && ts.len() <= MAX_SAMPLES,
        "1..=65535 samples, as many values as timestamps"
    );
    debug_assert!(ts.windows(2).all(|w| w[0] < w[1]), "timestamps must increase");
}

fn encode_planned(enc: Encoding, ts: &[i64], vals: &[f64], plan: &TsPlan) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(16 + ts.len() * 2);
    match enc {
        Encoding::Gorilla => {
            header(enc, ts, &mut out);
            out.extend_from_slice(&gorilla::encode_stream(ts, vals));
        }
        Encoding::Constant => {
            let bits = vals[0].to_bits();
            if vals.iter().any(|v| v.to_bits() != bits) {
                return None;
            }
            header(enc, ts, &mut out);
            out.extend_from_slice(&bits.to_be_bytes());
            let mut w = BitWriter::new();
            plan.write(&mut out, &mut w, ts);
            out.extend_from_slice(w.bytes());
        }
        Encoding::Decimal => {
            let (e, ms) = decimal::fit(vals)?;
            out = mantissa_chunk(enc, ts, plan, &[e], &ms, &decimal::MODES, false);
        }
        Encoding::FloatBits => {
            let ms: Vec<i64> = vals.iter().map(|v| v.to_bits() as i64).collect();
            // Interval positions (mode 3) where each sample's own binade is cheaper than the chunk's widest
            // bit-pattern delta; otherwise frame of reference first: delta codes (mode 0) only win on values
            // that rarely change, which Gorilla already stores in a bit each; delta-of-delta (mode 1) does
            // not suit values that wander.
            let positions = interval::plan(vals).filter(|p| decimal::for_bits(&ms).is_none_or(|b| p.bits < b));
            out = match positions {
                Some(p) => bit_chunk(enc, ts, plan, &[], 3, |w| interval::write(w, vals, &p)),
                None => mantissa_chunk(enc, ts, plan, &[], &ms, &[2, 0], true),
            };
        }
    }
    Some(out)
}

/// The smallest chunk of integer mantissas `ms` over `modes`, tried in order (`first_fit`: keep the first mode
/// that fits); `extra` are the payload bytes before the mode byte (Decimal's exponent).
fn mantissa_chunk(
    enc: Encoding,
    ts: &[i64],
    plan: &TsPlan,
    extra: &[u8],
    ms: &[i64],
    modes: &[u8],
    first_fit: bool,
) -> Vec<u8> {
    let mut best: Option<Vec<u8>> = None;
    for &mode in modes {
        if first_fit && best.is_some() {
            break;
        }
        if !decimal::fits_mode(ms, mode) {
            continue;
        }
        let c = bit_chunk(enc, ts, plan, extra, mode, |w| decimal::write_mantissas(w, ms, mode));
        if best.as_ref().is_none_or(|b| c.len() < b.len()) {
            best = Some(c);
        }
    }
    best.expect("mode 0 always fits, and every caller tries it")
}

/// A chunk of header, `extra` payload bytes, the mode byte, the timestamp mode byte and a bit stream: the
/// timestamp codes, then what `values` writes.
fn bit_chunk(
    enc: Encoding,
    ts: &[i64],
    plan: &TsPlan,
    extra: &[u8],
    mode: u8,
    values: impl FnOnce(&mut BitWriter),
) -> Vec<u8> {
    let mut c = Vec::with_capacity(16 + ts.len() * 2);
    header(enc, ts, &mut c);
    c.extend_from_slice(extra);
    c.push(mode);
    let mut w = BitWriter::with_capacity(ts.len() * 2);
    plan.write(&mut c, &mut w, ts);
    values(&mut w);
    c.extend_from_slice(w.bytes());
    c
}

/// Reads the header: O(1) apart from three varints.
pub fn chunk_header(buf: &[u8]) -> Result<ChunkHeader, CodecError> {
    header_and_payload(buf).map(|(h, _)| h)
}

fn header_and_payload(buf: &[u8]) -> Result<(ChunkHeader, usize), CodecError> {
    let tag = *buf.first().ok_or(CodecError::Empty)?;
    let encoding = match tag {
        1 => Encoding::Gorilla,
        2 => Encoding::Decimal,
        3 => Encoding::Constant,
        4 => Encoding::FloatBits,
        t => return Err(CodecError::UnknownEncoding(t)),
    };
    let mut pos = 1;
    let count = get_uvarint(buf, &mut pos).ok_or(CodecError::Truncated { offset: pos })?;
    if count == 0 || count > MAX_SAMPLES as u64 {
        return Err(CodecError::Corrupt { offset: 1, what: "sample count out of range" });
    }
    let first = unzigzag(get_uvarint(buf, &mut pos).ok_or(CodecError::Truncated { offset: pos })?);
    let span = get_uvarint(buf, &mut pos).ok_or(CodecError::Truncated { offset: pos })?;
    let last = first.wrapping_add(span as i64);
    Ok((ChunkHeader { encoding, count: count as u32, min_ts: first, max_ts: last }, pos))
}

/// Decodes a chunk, appending to the outputs. Any input gives Ok or Err, never a panic; on Err the outputs
/// are restored to their length before the call. A chunk that decodes holds strictly increasing timestamps.
pub fn decode_chunk(buf: &[u8], ts: &mut Vec<i64>, vals: &mut Vec<f64>) -> Result<(), CodecError> {
    let (ts0, v0) = (ts.len(), vals.len());
    let res = decode_inner(buf, ts, vals);
    if res.is_err() {
        ts.truncate(ts0);
        vals.truncate(v0);
    }
    res
}

fn decode_inner(buf: &[u8], ts: &mut Vec<i64>, vals: &mut Vec<f64>) -> Result<(), CodecError> {
    let start = ts.len();
    let (h, pos) = header_and_payload(buf)?;
    let n = h.count as usize;
    let payload = &buf[pos..];
    ts.reserve(n);
    vals.reserve(n);
    let trunc = |r: &BitReader| CodecError::Truncated { offset: pos + r.byte_offset() };
    match h.encoding {
        Encoding::Gorilla => {
            gorilla::decode_stream(payload, n, h.min_ts, ts, vals)
                .ok_or(CodecError::Corrupt { offset: pos, what: "gorilla stream" })?;
        }
        Encoding::Constant => {
            let v = payload.get(..9).ok_or(CodecError::Truncated { offset: pos })?;
            let tsmode = v[8];
            let v = f64::from_bits(u64::from_be_bytes(v[..8].try_into().expect("8 bytes")));
            let mut r = BitReader::new(&payload[9..]);
            read_timestamps(tsmode, &mut r, &h, ts).ok_or_else(|| trunc(&r))?;
            vals.extend(std::iter::repeat_n(v, n));
        }
        Encoding::Decimal => {
            let (e, mode, tsmode) = match payload {
                [e, m, t, ..] => (*e, *m, *t),
                _ => return Err(CodecError::Truncated { offset: pos }),
            };
            if e > decimal::MAX_EXP || mode > 2 {
                return Err(CodecError::Corrupt { offset: pos, what: "decimal exponent or mode" });
            }
            let mut r = BitReader::new(&payload[3..]);
            read_timestamps(tsmode, &mut r, &h, ts).ok_or_else(|| trunc(&r))?;
            decimal::read_mantissas(&mut r, n, mode, e, vals).ok_or_else(|| trunc(&r))?;
        }
        Encoding::FloatBits => {
            let (mode, tsmode) = match payload {
                [m, t, ..] => (*m, *t),
                _ => return Err(CodecError::Truncated { offset: pos }),
            };
            if mode > 3 {
                return Err(CodecError::Corrupt { offset: pos, what: "float-bits mode" });
            }
            let mut r = BitReader::new(&payload[2..]);
            read_timestamps(tsmode, &mut r, &h, ts).ok_or_else(|| trunc(&r))?;
            if mode == 3 {
                interval::read(&mut r, n, |v| vals.push(v))
                    .ok_or(CodecError::Corrupt { offset: pos, what: "float-bits interval position" })?;
            } else {
                decimal::read_ints(&mut r, n, mode, |m| vals.push(f64::from_bits(m as u64)))
                    .ok_or_else(|| trunc(&r))?;
            }
        }
    }
    if ts.last() != Some(&h.max_ts) {
        return Err(CodecError::Corrupt { offset: 1, what: "last timestamp disagrees with the header" });
    }
    // Every encoder writes strictly increasing timestamps, and heads, merges and reads rely on it.
    if ts[start..].windows(2).any(|w| w[0] >= w[1]) {
        return Err(CodecError::Corrupt { offset: pos, what: "timestamps do not increase" });
    }
    Ok(())
}
