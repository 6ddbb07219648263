//! Writes [`pharos_fuzz::seeds`] into DIR/<target>/seed-N, for `scripts/fuzz.sh`.

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: pharos-fuzz-seeds DIR");
        std::process::exit(2);
    };
    for (i, (name, data)) in pharos_fuzz::seeds().into_iter().enumerate() {
        let d = std::path::Path::new(&dir).join(name);
        std::fs::create_dir_all(&d).expect("creating the seed directory");
        std::fs::write(d.join(format!("seed-{i}")), data).expect("writing a seed");
    }
}
