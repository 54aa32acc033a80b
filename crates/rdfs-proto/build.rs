//! Compiles `proto/` with protox (a pure-Rust protobuf compiler), so building
//! rdfs needs no system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "rdfs/common.proto",
        "rdfs/client_namenode.proto",
        "rdfs/datanode_protocol.proto",
        "rdfs/data_transfer.proto",
        "rdfs/editlog.proto",
        "rdfs/qjournal.proto",
        "rdfs/ha_service.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }
    let descriptors = protox::compile(files, [&proto_root])?;
    tonic_prost_build::configure()
        // Block data is forwarded along the pipeline without copying.
        .bytes(".rdfs.Packet")
        .bytes(".rdfs.ReadPacket")
        .compile_fds(descriptors)?;
    Ok(())
}
