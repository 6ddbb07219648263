//! Which shard holds a series: a consistent-hash ring over the shard ids.
//!
//! The key is the point's measurement and tag set (not the field), so all fields of one point land in one
//! shard and one Raft entry. The ring hashes with XXH3 (seed 0), which is fixed by its specification, so every
//! node and every future build routes a series to the same shard (std's default hasher promises neither).

use std::hash::{Hash, Hasher};

use hashring::HashRing;
use pharos_storage::Point;
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VNode {
    shard: u32,
    replica: u32,
}

impl Hash for VNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(b"shard");
        state.write_u32(self.shard);
        state.write_u32(self.replica);
    }
}

/// Virtual nodes per shard: enough for an even spread (~±10% at 16 shards).
const VNODES: u32 = 128;

/// Cheap to clone: the ring is shared.
#[derive(Clone)]
pub struct Router {
    ring: std::sync::Arc<HashRing<VNode, Xxh3DefaultBuilder>>,
    shards: u32,
}

impl Router {
    pub fn new(shards: u32) -> Router {
        let mut ring = HashRing::with_hasher(Xxh3DefaultBuilder::new());
        for shard in 0..shards {
            for replica in 0..VNODES {
                ring.add(VNode { shard, replica });
            }
        }
        Router { ring: std::sync::Arc::new(ring), shards }
    }

    pub fn shards(&self) -> u32 {
        self.shards
    }

    pub fn shard_of(&self, p: &Point) -> u32 {
        /// The routing key's bytes, written to the hasher in one piece (XXH3's streaming state copies every
        /// write, so one write of the whole key is much cheaper than one per string, and hashes the same).
        struct Key<'a>(&'a [u8]);
        impl Hash for Key<'_> {
            fn hash<H: Hasher>(&self, h: &mut H) {
                h.write(self.0);
            }
        }
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|buf| {
            buf.clear();
            buf.extend_from_slice(p.measurement.as_bytes());
            for (k, v) in &p.tags {
                buf.push(0);
                buf.extend_from_slice(k.as_bytes());
                buf.push(1);
                buf.extend_from_slice(v.as_bytes());
            }
            self.ring.get(&Key(buf)).map(|v| v.shard).unwrap_or(0)
        })
    }

    /// The shard that owns a named thing other than a series (an alert rule group, say), on the same ring.
    pub fn shard_of_name(&self, name: &str) -> u32 {
        self.ring.get(&name).map(|v| v.shard).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(host: usize) -> Point {
        Point {
            measurement: "cpu".into(),
            tags: vec![("host".into(), format!("h{host}").into())],
            fields: vec![("v".into(), 1.0)],
            timestamp: 0,
        }
    }

    const PINNED: [u32; 4] = [9, 5, 5, 14];

    #[test]
    fn routing_is_stable_and_spread() {
        let (r, again) = (Router::new(16), Router::new(16));
        let mut counts = [0usize; 16];
        for h in 0..16_000 {
            let s = r.shard_of(&point(h));
            assert_eq!(s, again.shard_of(&point(h)), "same series, same shard");
            counts[s as usize] += 1;
        }
        // Pinned: a change of hash would silently re-route every series already stored.
        assert_eq!([0, 1, 2, 3].map(|h| r.shard_of(&point(h))), PINNED);
        for c in counts {
            assert!((600..1400).contains(&c), "uneven spread: {counts:?}");
        }
        // Fields do not change the shard.
        let mut p = point(1);
        p.fields.push(("w".into(), 2.0));
        assert_eq!(r.shard_of(&p), r.shard_of(&point(1)));
    }

    #[test]
    fn adding_shards_moves_only_a_fraction() {
        let (a, b) = (Router::new(16), Router::new(17));
        let moved = (0..10_000).filter(|&h| a.shard_of(&point(h)) != b.shard_of(&point(h))).count();
        assert!(moved < 1_500, "{moved} of 10000 series moved");
    }
}
