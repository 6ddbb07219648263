//! Gorilla streams: delta-of-delta timestamps and XOR floats (Pelkonen et al., VLDB 2015), with integer
//! buckets sized for millisecond timestamps.
//!
//! Integers (timestamp delta-of-deltas, decimal mantissa deltas) are zigzagged and written in the first bucket
//! that holds them; a unary prefix names the bucket:
//!
//! | prefix  | payload bits | zigzag range        | e.g.                                 |
//! |---------|--------------|---------------------|--------------------------------------|
//! | `0`     | 0            | 0                   | a perfectly regular scrape           |
//! | `10`    | 7            | < 2^7 (±64)         | a few ms of jitter                   |
//! | `110`   | 12           | < 2^12 (±2 s)       |                                      |
//! | `1110`  | 20           | < 2^20 (±8.7 min)   | a missed scrape                      |
//! | `11110` | 32           | < 2^32              |                                      |
//! | `11111` | 64           | anything            | the first delta of a chunk, gaps     |
//!
//! A float is XORed with the previous one: `0` when equal; `10` + the meaningful bits when they fit the
//! previous window of leading/trailing zeros; `11` + 6 bits leading zeros + 6 bits (length - 1) + the bits.

use super::bits::{unzigzag, zigzag, BitReader, BitWriter};

const BUCKETS: [u32; 5] = [7, 12, 20, 32, 64];

#[inline]
pub fn write_int(w: &mut BitWriter, v: i64) {
    let z = zigzag(v);
    if z == 0 {
        w.bit(false);
        return;
    }
    for (i, &width) in BUCKETS.iter().enumerate() {
        if width == 64 || z < (1u64 << width) {
            // i+1 ones, then a zero unless this is the last bucket.
            let ones = i as u32 + 1;
            if i + 1 < BUCKETS.len() {
                w.write(((1u64 << ones) - 1) << 1, ones + 1);
            } else {
                w.write((1u64 << ones) - 1, ones);
            }
            w.write(z, width);
            return;
        }
    }
}

/// The bits [`write_int`] takes for `v`.
pub fn int_bits(v: i64) -> u64 {
    let z = zigzag(v);
    if z == 0 {
        return 1;
    }
    for (i, &width) in BUCKETS.iter().enumerate() {
        if width == 64 || z < (1u64 << width) {
            let prefix = if i + 1 < BUCKETS.len() { i as u64 + 2 } else { i as u64 + 1 };
            return prefix + width as u64;
        }
    }
    unreachable!("the last bucket holds anything")
}

#[inline]
pub fn read_int(r: &mut BitReader) -> Option<i64> {
    let n = r.unary(BUCKETS.len() as u32)?;
    if n == 0 {
        return Some(0);
    }
    Some(unzigzag(r.read(BUCKETS[n as usize - 1])?))
}

/// XOR state between consecutive floats.
#[derive(Debug, Clone, Copy)]
pub struct Xor {
    prev: u64,
    lead: u32,
    trail: u32,
}

impl Xor {
    pub fn new(first: u64) -> Xor {
        Xor { prev: first, lead: u32::MAX, trail: 0 }
    }

    #[inline]
    pub fn write(&mut self, w: &mut BitWriter, v: u64) {
        let x = v ^ self.prev;
        self.prev = v;
        if x == 0 {
            w.bit(false);
            return;
        }
        let l = x.leading_zeros().min(63);
        let t = x.trailing_zeros();
        if self.lead != u32::MAX && l >= self.lead && t >= self.trail {
            w.write(0b10, 2);
            w.write(x >> self.trail, 64 - self.lead - self.trail);
        } else {
            let len = 64 - l - t;
            w.write(0b11, 2);
            w.write(l as u64, 6);
            w.write((len - 1) as u64, 6);
            w.write(x >> t, len);
            self.lead = l;
            self.trail = t;
        }
    }

    /// Reads the next value; None on truncation or an impossible window.
    #[inline]
    pub fn read(&mut self, r: &mut BitReader) -> Option<u64> {
        if !r.bit()? {
            return Some(self.prev);
        }
        let x = if !r.bit()? {
            if self.lead == u32::MAX {
                return None;
            }
            r.read(64 - self.lead - self.trail)? << self.trail
        } else {
            let l = r.read(6)? as u32;
            let len = r.read(6)? as u32 + 1;
            if l + len > 64 {
                return None;
            }
            let t = 64 - l - len;
            self.lead = l;
            self.trail = t;
            r.read(len)? << t
        };
        self.prev ^= x;
        Some(self.prev)
    }
}

/// Timestamp delta-of-delta state.
#[derive(Debug, Clone, Copy)]
pub struct Dod {
    prev: i64,
    delta: i64,
}

impl Dod {
    pub fn new(first: i64) -> Dod {
        Dod { prev: first, delta: 0 }
    }

    #[inline]
    pub fn write(&mut self, w: &mut BitWriter, t: i64) {
        let delta = t.wrapping_sub(self.prev);
        write_int(w, delta.wrapping_sub(self.delta));
        self.delta = delta;
        self.prev = t;
    }

    #[inline]
    pub fn read(&mut self, r: &mut BitReader) -> Option<i64> {
        let dod = read_int(r)?;
        self.delta = self.delta.wrapping_add(dod);
        self.prev = self.prev.wrapping_add(self.delta);
        Some(self.prev)
    }
}

/// An in-memory head chunk: samples appended one at a time, kept as an interleaved Gorilla stream (the
/// first value raw, then per sample a timestamp code and a value code). Its bytes are exactly the payload of
/// a sealed Gorilla chunk.
#[derive(Debug, Clone, Default)]
pub struct HeadAppender {
    w: BitWriter,
    count: usize,
    first_ts: i64,
    dod: Option<Dod>,
    xor: Option<Xor>,
}

impl HeadAppender {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a sample; the caller guarantees `t` is greater than the last timestamp.
    pub fn append(&mut self, t: i64, v: f64) {
        let bits = v.to_bits();
        match (&mut self.dod, &mut self.xor) {
            (Some(d), Some(x)) => {
                debug_assert!(t > d.prev, "head timestamps must increase");
                d.write(&mut self.w, t);
                x.write(&mut self.w, bits);
            }
            _ => {
                self.first_ts = t;
                self.dod = Some(Dod::new(t));
                self.xor = Some(Xor::new(bits));
                self.w.write(bits, 64);
            }
        }
        self.count += 1;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn first_ts(&self) -> Option<i64> {
        (self.count > 0).then_some(self.first_ts)
    }

    pub fn last_ts(&self) -> Option<i64> {
        self.dod.map(|d| d.prev)
    }

    /// Appends every sample so far to the outputs.
    pub fn decode_into(&self, ts: &mut Vec<i64>, vals: &mut Vec<f64>) {
        if self.count == 0 {
            return;
        }
        decode_stream(self.w.bytes(), self.count, self.first_ts, ts, vals).expect("a head decodes what it wrote");
    }

    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.w.capacity_bytes()
    }

    pub fn stream(&self) -> &[u8] {
        self.w.bytes()
    }
}

/// Encodes samples as the interleaved stream a [`HeadAppender`] builds.
pub fn encode_stream(ts: &[i64], vals: &[f64]) -> Vec<u8> {
    let mut h = HeadAppender { w: BitWriter::with_capacity(ts.len() * 2 + 8), ..Default::default() };
    for (&t, &v) in ts.iter().zip(vals) {
        h.append(t, v);
    }
    h.w.into_bytes()
}

/// Decodes `count` samples of an interleaved stream; None on truncation or corruption.
pub fn decode_stream(data: &[u8], count: usize, first_ts: i64, ts: &mut Vec<i64>, vals: &mut Vec<f64>) -> Option<()> {
    let mut r = BitReader::new(data);
    let first = r.read(64)?;
    ts.push(first_ts);
    vals.push(f64::from_bits(first));
    let mut dod = Dod::new(first_ts);
    let mut xor = Xor::new(first);
    for _ in 1..count {
        ts.push(dod.read(&mut r)?);
        vals.push(f64::from_bits(xor.read(&mut r)?));
    }
    Some(())
}
