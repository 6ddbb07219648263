//! A network to break: each node in its own network namespace (`ip netns`), joined to the test's by a
//! veth pair on one bridge, so that links between nodes can be cut and healed while the test process
//! still reaches every node (as clients in another part of the network would). A cut is a blackhole route
//! in each of the two namespaces: packets vanish, connections hang, nothing is refused, as in a real
//! partition. Needs root (CI has it).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{ensure, Context, Result};

pub struct NetLab {
    /// Prefix of every name made (namespaces, links), short enough for interface names (15 bytes).
    id: String,
    subnet: u32,
    nodes: usize,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    ensure!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

impl NetLab {
    /// Makes `nodes` namespaces on a bridge; node i (from 1) gets the address [`NetLab::addr`].
    pub fn new(nodes: usize) -> Result<NetLab> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = (std::process::id() % 1000) * 10 + n % 10;
        let lab = NetLab { id: format!("pl{tag}"), subnet: 100 + tag % 150, nodes };
        let bridge = format!("{}b", lab.id);
        let _ = ip(&["link", "del", &bridge]);
        ip(&["link", "add", &bridge, "type", "bridge"]).context("making a bridge needs root")?;
        ip(&["addr", "add", &format!("10.{}.0.1/24", lab.subnet), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 1..=nodes {
            let (ns, outer, inner) = (lab.ns(i), format!("{}v{i}", lab.id), format!("{}p{i}", lab.id));
            let _ = ip(&["netns", "del", &ns]);
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["link", "add", &outer, "type", "veth", "peer", "name", &inner])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", lab.addr(i)), "dev", &inner])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["link", "set", &outer, "master", &bridge])?;
            ip(&["link", "set", &outer, "up"])?;
        }
        Ok(lab)
    }

    /// Node i's namespace.
    pub fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.id)
    }

    /// Node i's address.
    pub fn addr(&self, i: usize) -> String {
        format!("10.{}.0.{}", self.subnet, 10 + i)
    }

    /// Cuts the link between nodes `a` and `b`, both ways.
    pub fn cut(&self, a: usize, b: usize) -> Result<()> {
        ip(&["-n", &self.ns(a), "route", "add", "blackhole", &format!("{}/32", self.addr(b))])?;
        ip(&["-n", &self.ns(b), "route", "add", "blackhole", &format!("{}/32", self.addr(a))])
    }

    /// Drops what node `a` sends to node `b` (one way: `b`'s packets still reach `a`).
    pub fn cut_from(&self, a: usize, b: usize) -> Result<()> {
        ip(&["-n", &self.ns(a), "route", "add", "blackhole", &format!("{}/32", self.addr(b))])
    }

    pub fn heal_from(&self, a: usize, b: usize) -> Result<()> {
        ip(&["-n", &self.ns(a), "route", "del", "blackhole", &format!("{}/32", self.addr(b))])
    }

    /// Heals a cut.
    pub fn heal(&self, a: usize, b: usize) -> Result<()> {
        ip(&["-n", &self.ns(a), "route", "del", "blackhole", &format!("{}/32", self.addr(b))])?;
        ip(&["-n", &self.ns(b), "route", "del", "blackhole", &format!("{}/32", self.addr(a))])
    }

    /// Cuts node `a` from every other node (the test process still reaches it).
    pub fn isolate(&self, a: usize) -> Result<()> {
        (1..=self.nodes).filter(|&b| b != a).try_for_each(|b| self.cut(a, b))
    }

    pub fn rejoin(&self, a: usize) -> Result<()> {
        (1..=self.nodes).filter(|&b| b != a).try_for_each(|b| self.heal(a, b))
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for i in 1..=self.nodes {
            let _ = ip(&["netns", "del", &self.ns(i)]);
        }
        let _ = ip(&["link", "del", &format!("{}b", self.id)]);
    }
}
