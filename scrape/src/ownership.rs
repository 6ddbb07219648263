//! Which live node scrapes a target: a consistent-hash ring over the node ids.
//!
//! Each node has [`VNODES_PER_NODE`] points on the ring; a target key belongs to the node of the first point at
//! or after the key's hash. So every target has exactly one owner among the live nodes, the spread is even
//! (within roughly ±15% per node), and membership changes move only what they must: when a node leaves, only
//! its targets move (to the other nodes); when a node joins, only targets that the new node now owns move.
//! Hashing is XXH3 (seed 0), fixed by its specification, so every node and every build agree.

use std::hash::{Hash, Hasher};

use hashring::HashRing;
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

/// Points on the ring per node.
pub const VNODES_PER_NODE: u32 = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VNode {
    node: u64,
    replica: u32,
}

impl Hash for VNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(b"scrape-owner");
        state.write_u64(self.node);
        state.write_u32(self.replica);
    }
}

/// A ring over a set of live nodes; build it once per membership change and ask it for many keys.
pub struct OwnerRing {
    ring: HashRing<VNode, Xxh3DefaultBuilder>,
    nodes: Vec<u64>,
}

impl OwnerRing {
    /// A ring over `live_nodes` (duplicates are ignored; order does not matter).
    pub fn new(live_nodes: &[u64]) -> OwnerRing {
        let mut nodes = live_nodes.to_vec();
        nodes.sort_unstable();
        nodes.dedup();
        let mut ring = HashRing::with_hasher(Xxh3DefaultBuilder::new());
        let vnodes: Vec<VNode> =
            nodes.iter().flat_map(|&node| (0..VNODES_PER_NODE).map(move |replica| VNode { node, replica })).collect();
        ring.batch_add(vnodes);
        OwnerRing { ring, nodes }
    }

    /// The node that owns `key`; `None` when there are no live nodes.
    pub fn owner(&self, key: &str) -> Option<u64> {
        self.ring.get(&key).map(|v| v.node)
    }

    /// The live nodes, sorted.
    pub fn nodes(&self) -> &[u64] {
        &self.nodes
    }
}

/// The node among `live_nodes` that owns the target `key` (see [`OwnerRing`] to ask for many keys).
pub fn owner(key: &str, live_nodes: &[u64]) -> Option<u64> {
    OwnerRing::new(live_nodes).owner(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<String> {
        (0..10_000)
            .map(|i| format!("node|http://10.{}.{}.{}:9100/metrics|{i:016x}", i / 65536, (i / 256) % 256, i % 256))
            .collect()
    }

    fn spread(nodes: &[u64]) -> Vec<usize> {
        let ring = OwnerRing::new(nodes);
        let mut counts = vec![0; nodes.len()];
        for k in keys() {
            let o = ring.owner(&k).unwrap();
            counts[nodes.iter().position(|n| *n == o).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn spread_is_even_on_3_and_5_nodes() {
        for nodes in [vec![1u64, 2, 3], vec![11u64, 22, 33, 44, 55]] {
            let counts = spread(&nodes);
            let mean = 10_000 / nodes.len();
            for c in &counts {
                let dev = (*c as f64 - mean as f64).abs() / mean as f64;
                assert!(dev < 0.2, "counts {counts:?} on {nodes:?}: {c} is {:.0}% from {mean}", dev * 100.0);
            }
        }
    }

    #[test]
    fn exactly_one_owner_among_live_nodes_and_order_does_not_matter() {
        let a = OwnerRing::new(&[3, 1, 2]);
        let b = OwnerRing::new(&[1, 2, 3, 2]);
        assert_eq!(a.nodes(), &[1, 2, 3]);
        for k in keys().iter().take(500) {
            let o = a.owner(k).unwrap();
            assert!([1, 2, 3].contains(&o));
            assert_eq!(Some(o), b.owner(k));
            assert_eq!(Some(o), owner(k, &[2, 3, 1]));
        }
        assert_eq!(owner("x", &[]), None);
        assert_eq!(owner("x", &[7]), Some(7));
    }

    #[test]
    fn removing_a_node_moves_only_its_keys() {
        let before = OwnerRing::new(&[1, 2, 3, 4, 5]);
        let after = OwnerRing::new(&[1, 2, 4, 5]);
        let mut moved = 0;
        for k in keys() {
            let (b, a) = (before.owner(&k).unwrap(), after.owner(&k).unwrap());
            if b == 3 {
                assert_ne!(a, 3);
                moved += 1;
            } else {
                assert_eq!(a, b, "{k} moved from {b} to {a} although {b} stayed");
            }
        }
        assert!(moved > 1000, "node 3 owned {moved} keys");
    }

    #[test]
    fn adding_a_node_moves_keys_only_to_it() {
        let before = OwnerRing::new(&[1, 2, 3]);
        let after = OwnerRing::new(&[1, 2, 3, 4]);
        let mut moved = 0;
        for k in keys() {
            let (b, a) = (before.owner(&k).unwrap(), after.owner(&k).unwrap());
            if a != b {
                assert_eq!(a, 4, "{k} moved from {b} to {a}, not to the new node");
                moved += 1;
            }
        }
        // About a quarter of the keys go to the new node.
        assert!((1500..3500).contains(&moved), "{moved} keys moved");
    }
}
