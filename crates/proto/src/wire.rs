//! Generated protobuf types of `proto/albatross/v1/*.proto` (prost + tonic).

#[allow(missing_debug_implementations, clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod v1 {
    tonic::include_proto!("albatross.v1");
}

/// The encoded `FileDescriptorSet` of the v1 contract, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/albatross_v1_descriptor.bin"));
