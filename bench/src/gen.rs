//! Deterministic workloads, shaped like ../shared/peers/gen.py's two sets so figures compare:
//! `cpu` (TSBS cpu-only-like: 10 tags, 10 full-precision float random walks per host) and `node`
//! (node-exporter-like: 20 integer counters, 20 gauges with 0-2 decimals, 10 constants per host).

use pharos_storage::{Point, SmolStr};

pub const CPU_FIELDS: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];

/// xorshift64*: fast, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Set {
    Cpu,
    Node,
}

pub struct Generator {
    set: Set,
    hosts: Vec<Vec<(SmolStr, SmolStr)>>,
    state: Vec<Vec<f64>>,
    rates: Vec<Vec<u64>>,
    rng: Rng,
}

impl Generator {
    pub fn new(set: Set, hosts: usize, seed: u64) -> Generator {
        let mut rng = Rng::new(seed);
        let regions = ["us-east-1", "us-west-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1"];
        let mut tags = Vec::new();
        let mut state = Vec::new();
        let mut rates = Vec::new();
        for i in 0..hosts {
            let r = regions[i % regions.len()];
            let t: Vec<(SmolStr, SmolStr)> = match set {
                Set::Cpu => vec![
                    ("arch".into(), ["x64", "x86"][rng.below(2) as usize].into()),
                    ("datacenter".into(), format!("{r}{}", ["a", "b", "c"][i % 3]).into()),
                    ("hostname".into(), format!("host_{i}").into()),
                    ("os".into(), ["Ubuntu15.10", "Ubuntu16.04LTS", "Ubuntu16.10"][rng.below(3) as usize].into()),
                    ("rack".into(), rng.below(100).to_string().into()),
                    ("region".into(), r.into()),
                    ("service".into(), rng.below(20).to_string().into()),
                    ("service_environment".into(), ["production", "staging", "test"][rng.below(3) as usize].into()),
                    ("service_version".into(), rng.below(2).to_string().into()),
                    ("team".into(), ["SF", "NYC", "LON", "CHI"][rng.below(4) as usize].into()),
                ],
                Set::Node => vec![
                    ("host".into(), format!("node-{i:04}").into()),
                    ("pool".into(), format!("pool-{:03}", i / 100).into()),
                    ("region".into(), r.into()),
                ],
            };
            tags.push(t);
            match set {
                Set::Cpu => state.push((0..10).map(|_| rng.f64() * 100.0).collect()),
                Set::Node => {
                    let mut s: Vec<f64> = (0..20).map(|_| (1_000_000 + rng.below(999_000_000)) as f64).collect();
                    s.extend((0..20).map(|k| round_to(rng.f64() * 100.0, (k % 3) as i32)));
                    s.extend((0..10).map(|_| (1 + rng.below(999_999_999_999)) as f64));
                    state.push(s);
                    rates.push((0..20).map(|_| [0, 1, 10, 100, 1000, 100_000][rng.below(6) as usize]).collect());
                }
            }
        }
        Generator { set, hosts: tags, state, rates, rng }
    }

    pub fn fields_per_point(&self) -> usize {
        match self.set {
            Set::Cpu => 10,
            Set::Node => 50,
        }
    }

    /// The next point of every host at `ts` (ms).
    pub fn step(&mut self, ts: i64, out: &mut Vec<Point>) {
        for h in 0..self.hosts.len() {
            let s = &mut self.state[h];
            let fields: Vec<(SmolStr, f64)> = match self.set {
                Set::Cpu => {
                    for v in s.iter_mut() {
                        *v = (*v + self.rng.f64() * 2.0 - 1.0).clamp(0.0, 100.0);
                    }
                    CPU_FIELDS.iter().zip(s.iter()).map(|(n, v)| (SmolStr::new(n), *v)).collect()
                }
                Set::Node => {
                    for k in 0..20 {
                        let rate = self.rates[h][k];
                        if rate > 0 {
                            s[k] += self.rng.below(rate + 1) as f64;
                        }
                        if self.rng.f64() < 0.3 {
                            let dec = (k % 3) as i32;
                            s[20 + k] = round_to((s[20 + k] + self.rng.f64() * 2.0 - 1.0).clamp(0.0, 100.0), dec);
                        }
                    }
                    let mut f = Vec::with_capacity(50);
                    for k in 0..20 {
                        f.push((format!("counter_{k}").into(), s[k]));
                    }
                    for k in 0..20 {
                        f.push((format!("gauge_{k}").into(), s[20 + k]));
                    }
                    for k in 0..10 {
                        f.push((format!("const_{k}").into(), s[40 + k]));
                    }
                    f
                }
            };
            let measurement = match self.set {
                Set::Cpu => "cpu",
                Set::Node => "node",
            };
            out.push(Point { measurement: measurement.into(), tags: self.hosts[h].clone(), fields, timestamp: ts });
        }
    }
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (v * p).round() / p
}
