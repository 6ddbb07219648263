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

    /// Writes the low `n` bits of `v` (n <= 64), most significant first.
    #[inline]
    pub fn write(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 64);
        let mut left = n;
        while left > 0 {
            if self.used == 0 {
                self.buf.push(0);
            }
            let free = 8 - self.used;
            let take = free.min(left);
            let shift = left - take;
            let bits = ((v >> shift) & ((1u64 << take) - 1)) as u8;
            let last = self.buf.len() - 1;
            self.buf[last] |= bits << (free - take);
            self.used = (self.used + take) % 8;
            left -= take;
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
