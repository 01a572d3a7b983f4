//! Compiles `proto/albatross/v1/*.proto` with `protox` (pure Rust: no `protoc` on the machine)
//! and generates prost messages plus tonic clients and servers.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTO_FILES: &[&str] =
    &["albatross/v1/common.proto", "albatross/v1/coordinator.proto", "albatross/v1/peer.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let descriptors = protox::compile(PROTO_FILES, [&proto_root])?;
    // Served by gRPC reflection so `grpcurl` and friends work without the .proto files.
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("albatross_v1_descriptor.bin"), descriptors.encode_to_vec())?;

    tonic_prost_build::configure()
        // Tensor payloads become `bytes::Bytes`: slicing a received chunk never copies it.
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
