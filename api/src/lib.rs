//! Tandem's gRPC API (package `tandem.v1`) and its Rust SDK.
//!
//! - [`proto`]: the generated messages, tonic clients and servers of `api/proto/tandem/v1/`.

/// The generated code of package `tandem.v1` (prost messages, tonic clients and servers).
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("tandem.v1");

    /// The encoded `FileDescriptorSet` of package `tandem.v1`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("tandem_v1_descriptor");
}
