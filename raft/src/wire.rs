//! Encoding of Raft payloads on the wire and in the log: bincode, then LZ4 (snapshots metadata, votes,
//! meta and state entries); shard writes carry their batches packed already and skip LZ4. Small payloads
//! cost one byte more.
//!
//! | bytes | meaning |
//! |---|---|
//! | 1 | 0: bincode as is; 1: LZ4 block with its uncompressed size prepended; 2: a framed AppendEntries request (below) |
//! | n | payload |
//!
//! A framed AppendEntries request (only on the network, see [`crate::network`]) is the bincode of openraft's
//! vote, previous log id and leader commit, then the entries as a sequence of byte strings, each an entry in
//! the format above exactly as the leader's log stored it.

use serde::de::DeserializeOwned;
use serde::Serialize;

const PLAIN: u8 = 0;
const LZ4: u8 = 1;
/// A framed AppendEntries request; decoded by [`crate::network`], never by [`decode`].
pub const FRAMED: u8 = 2;
/// Payloads smaller than this are not worth compressing.
const MIN_COMPRESS: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("encoding: {0}")]
    Encode(#[from] bincode::Error),
    #[error("corrupt LZ4 payload: {0}")]
    Lz4(#[from] lz4_flex::block::DecompressError),
    #[error("empty or unknown payload format")]
    Format,
}

pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, WireError> {
    encode_with(v, true)
}

/// A log entry: LZ4 except for shard writes, whose batches are packed already (see
/// `pharos_storage::packed`: LZ4 would find little to take out of them, at a high cost in CPU).
pub fn encode_entry(e: &crate::types::Entry) -> Result<Vec<u8>, WireError> {
    let packed = matches!(
        &e.payload,
        openraft::EntryPayload::Normal(crate::types::Request::Shard(pharos_storage::Command::Write(_)))
    );
    encode_with(e, !packed)
}

fn encode_with<T: Serialize>(v: &T, compress: bool) -> Result<Vec<u8>, WireError> {
    // Not `bincode::serialize`: it walks the value twice (once to size the buffer), and a shard write packs
    // its batches on each walk.
    let mut raw = Vec::with_capacity(256);
    bincode::serialize_into(&mut raw, v)?;
    if raw.len() < MIN_COMPRESS || !compress {
        let mut out = Vec::with_capacity(raw.len() + 1);
        out.push(PLAIN);
        out.extend_from_slice(&raw);
        return Ok(out);
    }
    let mut out = vec![LZ4];
    out.extend_from_slice(&lz4_flex::block::compress_prepend_size(&raw));
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(buf: &[u8]) -> Result<T, WireError> {
    match buf.split_first() {
        Some((&PLAIN, rest)) => Ok(bincode::deserialize(rest)?),
        Some((&LZ4, rest)) => {
            // The size prefix is the sender's word: refuse one LZ4 could not have produced from this input
            // (at most 255 output bytes per input byte) before allocating it.
            let claimed = rest.get(..4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
            if claimed.is_none_or(|n| n > rest.len().saturating_mul(255)) {
                return Err(WireError::Format);
            }
            Ok(bincode::deserialize(&lz4_flex::block::decompress_size_prepended(rest)?)?)
        }
        _ => Err(WireError::Format),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_small_and_large_and_rejects_garbage() {
        let small = vec![1u32, 2, 3];
        assert_eq!(decode::<Vec<u32>>(&encode(&small).unwrap()).unwrap(), small);
        let large: Vec<String> = (0..1000).map(|i| format!("cpu,hostname=host_{},region=us-west-1", i % 10)).collect();
        let enc = encode(&large).unwrap();
        assert_eq!(enc[0], LZ4);
        assert!(enc.len() * 4 < bincode::serialize(&large).unwrap().len(), "repetitive payloads shrink");
        assert_eq!(decode::<Vec<String>>(&enc).unwrap(), large);
        assert!(decode::<Vec<String>>(&[]).is_err());
        assert!(decode::<Vec<String>>(&[7, 1, 2]).is_err());
        assert!(decode::<Vec<String>>(&[LZ4, 200, 0, 0, 0, 1, 2, 3]).is_err());
        // A size prefix of 4 GiB on a few bytes is refused before anything that large is allocated.
        assert!(decode::<Vec<String>>(&[LZ4, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]).is_err());
    }
}
