//! Generates the gRPC code with a vendored protoc, so building needs no system protobuf compiler.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; tonic-prost-build reads PROTOC from the environment.
    std::env::set_var("PROTOC", protoc);
    tonic_prost_build::configure()
        .compile_protos(&["proto/pharos.proto", "proto/raft.proto", "proto/remote.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
