//! Compiles `proto/tandem/v1/*.proto` with protox (no `protoc` binary needed) into Rust
//! (prost messages, tonic clients and servers) and a file descriptor set for server reflection,
//! all in `OUT_DIR`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/tandem/v1/common.proto",
        "proto/tandem/v1/workflow_service.proto",
        "proto/tandem/v1/worker_service.proto",
        "proto/tandem/v1/cluster_service.proto",
        "proto/tandem/v1/dr_service.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let encoded = prost::Message::encode_to_vec(&descriptors);
    std::fs::write(out_dir.join("tandem_v1_descriptor.bin"), encoded)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
