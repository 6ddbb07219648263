//! Every committed corpus file and regression input, and every generated seed, passes its target on the
//! stable toolchain: a crash a fuzzer once found stays fixed (docs/reliability.md). And every target has its
//! cargo-fuzz binary.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target(name: &str) -> pharos_fuzz::Target {
    pharos_fuzz::TARGETS.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no target {name}")).1
}

#[test]
fn every_corpus_file_and_regression_input_passes_its_target() {
    let mut ran = 0;
    for (name, run) in pharos_fuzz::TARGETS {
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz_dir().join(dir).join(name)) else { continue };
            for e in entries.flatten() {
                let data = std::fs::read(e.path()).unwrap();
                if std::panic::catch_unwind(|| run(&data)).is_err() {
                    panic!("{name}: {} fails its target", e.path().display());
                }
                ran += 1;
            }
        }
    }
    assert!(ran >= pharos_fuzz::TARGETS.len(), "the corpora are there ({ran} files)");
}

#[test]
fn seeds_pass_their_targets_and_every_target_has_an_input() {
    let seeds = pharos_fuzz::seeds();
    for (name, data) in &seeds {
        target(name)(data);
    }
    for (name, _) in pharos_fuzz::TARGETS {
        let committed = std::fs::read_dir(fuzz_dir().join("corpus").join(name)).map_or(0, |d| d.count());
        let seeded = seeds.iter().filter(|(n, _)| n == name).count();
        assert!(committed + seeded > 0, "{name} has neither a corpus nor a seed");
    }
}

#[test]
fn every_target_has_a_cargo_fuzz_binary() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("targets/Cargo.toml")).unwrap();
    for (name, _) in pharos_fuzz::TARGETS {
        let path = format!("fuzz_targets/{name}.rs");
        assert!(manifest.contains(&format!("name = \"{name}\"")) && manifest.contains(&path), "{name} in Cargo.toml");
        let source = std::fs::read_to_string(fuzz_dir().join("targets").join(&path)).unwrap();
        assert!(source.contains("fuzz_target!") && source.contains("pharos_fuzz::"), "{path}");
    }
}
