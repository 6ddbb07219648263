//! Bit-level writer and reader, kept apart from the encodings that use them.
//!
//! Bits are written most-significant first into bytes. The reader loads 64-bit big-endian words so a read of
//! up to 64 bits costs one or two shifts; running past the end is an error, never a panic.

#[derive(Debug, Clone, Default)]
pub struct BitWriter {
    buf: Vec<u8>,
    /// Bits used in the last byte (0 = the last byte is full, or the buffer is empty).
    used: u32,
}

impl BitWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(bytes: usize) -> Self {
        BitWriter { buf: Vec::with_capacity(bytes), used: 0 }
    }

    /// Writes the low `n` bits of `v` (n <= 64), most significant first: fills the open byte, then appends
    /// whole bytes at once, then opens a byte for what is left.
    #[inline]
    pub fn write(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 64);
        let mut left = n;
        if left == 0 {
            return;
        }
        if self.used != 0 {
            let free = 8 - self.used;
            let take = free.min(left);
            let bits = ((v >> (left - take)) & ((1u64 << take) - 1)) as u8;
            *self.buf.last_mut().expect("a byte is open") |= bits << (free - take);
            self.used = (self.used + take) % 8;
            left -= take;
        }
        let whole = (left / 8) as usize;
        if whole > 0 {
            // The next `left` bits at the top of a word (left >= 8, so the shift is below 64).
            let top = v << (64 - left);
            self.buf.extend_from_slice(&top.to_be_bytes()[..whole]);
            left -= 8 * whole as u32;
        }
        if left > 0 {
            self.buf.push((v << (8 - left)) as u8);
            self.used = left;
        }
    }

    #[inline]
    pub fn bit(&mut self, b: bool) {
        self.write(b as u64, 1);
    }

    pub fn bit_len(&self) -> usize {
        self.buf.len() * 8 - if self.used == 0 { 0 } else { (8 - self.used) as usize }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn capacity_bytes(&self) -> usize {
        self.buf.capacity()
    }
}

#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    /// Byte offset of the current position (for error reports).
    pub fn byte_offset(&self) -> usize {
        self.pos / 8
    }

    /// Reads `n` bits (n <= 64); None past the end.
    #[inline]
    pub fn read(&mut self, n: u32) -> Option<u64> {
        if n == 0 {
            return Some(0);
        }
        let end = self.pos.checked_add(n as usize)?;
        if end > self.data.len() * 8 {
            return None;
        }
        let byte = self.pos / 8;
        let off = (self.pos % 8) as u32;
        // Load up to 9 bytes covering the bits: 64 bits + offset may span 9 bytes. Away from the end, one
        // fixed 16-byte load (two machine loads); near it, a zero-padded copy.
        let hi = match self.data.get(byte..byte + 16) {
            Some(w) => u128::from_be_bytes(w.try_into().expect("16 bytes")),
            None => {
                let mut word = [0u8; 16];
                let avail = self.data.len() - byte;
                word[..avail].copy_from_slice(&self.data[byte..]);
                u128::from_be_bytes(word)
            }
        };
        let v = (hi << off) >> (128 - n);
        self.pos = end;
        Some(v as u64)
    }

    /// Reads `count` values of `width` bits each (width <= 64), handing each to `f`; the bounds are checked
    /// once for the whole run. None (nothing consumed, `f` not called) when the run does not fit.
    #[inline]
    pub fn read_run(&mut self, width: u32, count: usize, mut f: impl FnMut(u64)) -> Option<()> {
        if width > 64 {
            return None;
        }
        let bits = (width as usize).checked_mul(count)?;
        let end = self.pos.checked_add(bits)?;
        if end > self.data.len() * 8 {
            return None;
        }
        if width == 0 {
            (0..count).for_each(|_| f(0));
            return Some(());
        }
        // Values whose 16-byte window lies inside the data take the fast load; the last few the padded one.
        let safe_end = self.data.len().saturating_sub(16) * 8;
        let mut pos = self.pos;
        for _ in 0..count {
            let byte = pos / 8;
            let hi = if pos < safe_end {
                u128::from_be_bytes(self.data[byte..byte + 16].try_into().expect("16 bytes"))
            } else {
                let mut word = [0u8; 16];
                let avail = (self.data.len() - byte).min(16);
                word[..avail].copy_from_slice(&self.data[byte..byte + avail]);
                u128::from_be_bytes(word)
            };
            f(((hi << (pos % 8)) >> (128 - width)) as u64);
            pos += width as usize;
        }
        self.pos = end;
        Some(())
    }

    #[inline]
    pub fn bit(&mut self) -> Option<bool> {
        self.read(1).map(|b| b == 1)
    }

    /// Counts leading 1 bits up to `max` (consuming them and the terminating 0 if fewer than `max`).
    #[inline]
    pub fn unary(&mut self, max: u32) -> Option<u32> {
        let mut n = 0;
        while n < max {
            if !self.bit()? {
                return Some(n);
            }
            n += 1;
        }
        Some(n)
    }
}

#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint at `*pos`; None if truncated or longer than 10 bytes.
pub fn get_uvarint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= ((b & 0x7f) as u64) << (7 * i);
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn writes_exactly_the_low_bits_asked_for(writes in proptest::collection::vec((any::<u64>(), 0u32..=64), 0..60)) {
            // A bit at a time, as the definition says; higher bits of each value are garbage to ignore.
            let mut want: Vec<bool> = Vec::new();
            let mut w = BitWriter::new();
            for &(v, n) in &writes {
                w.write(v, n);
                for i in (0..n).rev() {
                    want.push(v >> i & 1 == 1);
                }
            }
            prop_assert_eq!(w.bit_len(), want.len());
            let bytes = w.into_bytes();
            prop_assert_eq!(bytes.len(), want.len().div_ceil(8));
            for (i, b) in want.iter().enumerate() {
                prop_assert_eq!(bytes[i / 8] >> (7 - i % 8) & 1 == 1, *b, "bit {}", i);
            }
            // Padding bits are zero.
            for i in want.len()..bytes.len() * 8 {
                prop_assert_eq!(bytes[i / 8] >> (7 - i % 8) & 1, 0);
            }
            let mut r = BitReader::new(&bytes);
            for &(v, n) in &writes {
                let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                prop_assert_eq!(r.read(n), Some(v & mask));
            }
        }
    }

    #[test]
    fn read_run_reads_what_read_reads_and_refuses_a_short_run() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for width in [0u32, 1, 3, 7, 8, 13, 31, 47, 63, 64] {
            for count in [0usize, 1, 2, 17, 100] {
                let mut w = BitWriter::new();
                w.write(5, 3); // start off a byte boundary
                let mut want = Vec::new();
                for _ in 0..count {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let v = if width == 64 { x } else { x & ((1u64 << width) - 1) };
                    w.write(v, width);
                    want.push(v);
                }
                let bytes = w.bytes().to_vec();
                let mut r = BitReader::new(&bytes);
                assert_eq!(r.read(3), Some(5));
                let mut got = Vec::new();
                r.read_run(width, count, |v| got.push(v)).unwrap();
                assert_eq!(got, want, "width {width} count {count}");
                // One value more than the data holds: None, and nothing handed out.
                let mut r = BitReader::new(&bytes);
                r.read(3);
                let extra = bytes.len() * 8 - 3 - width as usize * count;
                if width > 0 && extra < width as usize {
                    let mut n = 0;
                    assert!(r.read_run(width, count + 1, |_| n += 1).is_none());
                    assert_eq!(n, 0);
                }
            }
        }
    }
}
