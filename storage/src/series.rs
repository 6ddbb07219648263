//! Series identity: the canonical series key and the metadata kept per series.
//!
//! A series is one (measurement, sorted tag set, field). Its canonical key is length-prefixed so no escaping
//! is needed and no two series share a key:
//!
//! | bytes           | meaning                           |
//! |-----------------|-----------------------------------|
//! | varint n, n     | measurement                       |
//! | varint t        | number of tags                    |
//! | (varint, bytes) | key then value, t times, by key   |
//! | varint n, n     | field                             |
//! | u16 (BE)        | retention class (0 = default)     |

use std::sync::Arc;

/// Metadata of one series, shared between the index and readers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesInfo {
    pub measurement: Arc<str>,
    /// Shared by the series of one tag set (the fields of a point), and the strings with every series of the
    /// measurement (see [`crate::index::Index::insert`]).
    pub tags: Arc<[(Arc<str>, Arc<str>)]>,
    pub field: Arc<str>,
    pub class: u16,
}

impl SeriesInfo {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.binary_search_by(|(k, _)| k.as_ref().cmp(key)).ok().map(|i| self.tags[i].1.as_ref())
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn get_str<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a str> {
    std::str::from_utf8(get_bytes(buf, pos)?).ok()
}

/// Builds the canonical key of (measurement, tags, field); `tags` must be sorted by key (the parsers do).
/// The retention class is not part of the identity: it is appended by [`encode_stored`].
pub fn canonical_key<S: AsRef<str>>(measurement: &str, tags: &[(S, S)], field: &str, out: &mut Vec<u8>) {
    canonical_prefix(measurement, tags, out);
    put_str(out, field);
}

/// The part of a canonical key before the field (the same for every field of a point): build it once,
/// then [`with_field`] per field.
pub fn canonical_prefix<S: AsRef<str>>(measurement: &str, tags: &[(S, S)], out: &mut Vec<u8>) {
    out.clear();
    put_str(out, measurement);
    put_varint(out, tags.len() as u64);
    for (k, v) in tags {
        put_str(out, k.as_ref());
        put_str(out, v.as_ref());
    }
}

/// Length of a canonical key's prefix (measurement and tags): where its field begins. None when `key` is
/// not a canonical key.
pub fn prefix_len(key: &[u8]) -> Option<usize> {
    let mut pos = 0;
    get_bytes(key, &mut pos)?;
    let n = get_varint(key, &mut pos)?;
    for _ in 0..n.checked_mul(2)? {
        get_bytes(key, &mut pos)?;
    }
    Some(pos)
}

fn get_bytes<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let n = get_varint(buf, pos)? as usize;
    let end = pos.checked_add(n)?;
    let b = buf.get(*pos..end)?;
    *pos = end;
    Some(b)
}

/// Replaces whatever follows the first `prefix_len` bytes of `out` with the field: `canonical_prefix` +
/// `with_field` equals `canonical_key`.
pub fn with_field(out: &mut Vec<u8>, prefix_len: usize, field: &str) {
    out.truncate(prefix_len);
    put_str(out, field);
}

/// The stored form: canonical key followed by the retention class.
pub fn encode_stored(canonical: &[u8], class: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(canonical.len() + 2);
    v.extend_from_slice(canonical);
    v.extend_from_slice(&class.to_be_bytes());
    v
}

/// Decodes a stored series key; returns the info and the canonical part's length.
pub fn decode_stored(buf: &[u8]) -> Option<(SeriesInfo, usize)> {
    let mut pos = 0;
    let measurement: Arc<str> = get_str(buf, &mut pos)?.into();
    let n = get_varint(buf, &mut pos)? as usize;
    if n > buf.len() {
        return None;
    }
    let mut tags = Vec::with_capacity(n);
    for _ in 0..n {
        let k: Arc<str> = get_str(buf, &mut pos)?.into();
        let v: Arc<str> = get_str(buf, &mut pos)?.into();
        tags.push((k, v));
    }
    let field: Arc<str> = get_str(buf, &mut pos)?.into();
    let canonical_len = pos;
    let class = u16::from_be_bytes(buf.get(pos..pos + 2)?.try_into().ok()?);
    if pos + 2 != buf.len() {
        return None;
    }
    Some((SeriesInfo { measurement, tags: tags.into(), field, class }, canonical_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_no_ambiguity() {
        let tags = vec![("a".to_string(), "b,c".to_string()), ("host".into(), "x=y".into())];
        let mut k = Vec::new();
        canonical_key("cpu", &tags, "usage", &mut k);
        let stored = encode_stored(&k, 7);
        let (info, len) = decode_stored(&stored).unwrap();
        assert_eq!(len, k.len());
        assert_eq!(&*info.measurement, "cpu");
        assert_eq!(info.tag("host"), Some("x=y"));
        assert_eq!(info.tag("a"), Some("b,c"));
        assert_eq!(info.tag("zzz"), None);
        assert_eq!(&*info.field, "usage");
        assert_eq!(info.class, 7);
        // Moving a character between components must change the key.
        let mut k2 = Vec::new();
        canonical_key("cp", &[("ua", "b,c")], "usage", &mut k2);
        assert_ne!(k, k2);
    }

    #[test]
    fn prefix_then_field_equals_the_whole_key() {
        let tags = vec![("dc".to_string(), "eu".to_string()), ("host".into(), "h1".into())];
        let (mut whole, mut reused) = (Vec::new(), Vec::new());
        canonical_prefix("cpu", &tags, &mut reused);
        let n = reused.len();
        for field in ["usage_user", "u", "a_much_longer_field_name"] {
            canonical_key("cpu", &tags, field, &mut whole);
            with_field(&mut reused, n, field);
            assert_eq!(whole, reused, "{field}");
            assert_eq!(prefix_len(&whole), Some(n), "the prefix is found again in the whole key");
        }
        assert_eq!(prefix_len(&whole[..n - 1]), None);
    }

    #[test]
    fn decode_rejects_garbage_without_panicking() {
        for len in 0..40 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = decode_stored(&junk);
        }
        assert!(decode_stored(&[0xff, 0xff, 0xff]).is_none());
    }
}
