//! Generates the gRPC code from `proto/*.proto` with protoc (Debian `protobuf-compiler`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/raft.proto",
        "proto/catalog.proto",
        "proto/scheduler.proto",
    ];
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
