//! Random faults for soak tests: one node at a time SIGKILLed and restarted, frozen with SIGSTOP, or cut off
//! from the others ([`crate::netlab::NetLab`]), for 2 to 8 seconds, from a seeded generator so a failing run
//! can be replayed.

use std::time::Duration;

use anyhow::Result;

use crate::netlab::NetLab;
use crate::Cluster;

/// xorshift64*, seeded: faults reproducible from the printed seed.
pub struct Rng(pub u64);

impl Rng {
    /// A seed from `var` (to replay a run) or the clock; printed by the caller.
    pub fn seed_from_env(var: &str) -> u64 {
        std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        })
    }

    pub fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// A soak's length and fault generator: `PREFIX_SECS` (else `default_secs`) and `PREFIX_SEED` (else the
/// clock), printed so a failing run can be replayed.
pub fn soak(what: &str, prefix: &str, default_secs: u64) -> (u64, Rng) {
    let secs = std::env::var(format!("{prefix}_SECS")).ok().and_then(|s| s.parse().ok()).unwrap_or(default_secs);
    let seed = Rng::seed_from_env(&format!("{prefix}_SEED"));
    println!("{what}: {secs} s, seed {seed} ({prefix}_SEED={seed} replays it)");
    (secs, Rng(seed | 1))
}

/// Injects one fault into a random node of `c` (started in `lab`), holds it, and repairs it; returns what it
/// did.
pub async fn one(c: &mut Cluster, lab: &NetLab, rng: &mut Rng) -> Result<String> {
    let victim = rng.next(c.nodes.len() as u64) as usize;
    let hold = Duration::from_millis(2_000 + rng.next(6_000));
    let what = match rng.next(3) {
        0 => {
            c.nodes[victim].kill();
            tokio::time::sleep(hold).await;
            c.nodes[victim].start()?;
            "SIGKILL"
        }
        1 => {
            c.nodes[victim].signal("STOP")?;
            tokio::time::sleep(hold).await;
            c.nodes[victim].signal("CONT")?;
            "SIGSTOP"
        }
        _ => {
            lab.isolate(victim + 1)?;
            tokio::time::sleep(hold).await;
            lab.rejoin(victim + 1)?;
            "cut off"
        }
    };
    Ok(format!("{what} node {} for {hold:?}", victim + 1))
}
