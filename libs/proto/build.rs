//! Compiles the project's .proto files. Needs `protoc` (Debian: protobuf-compiler);
//! `make` installs it when it is missing.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "remote.proto",
        "types.proto",
        "ingester.proto",
        "storegateway.proto",
    ]
    .map(|f| proto_dir.join(f));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    tonic_prost_build::configure()
        .bytes(".strata.types.Chunk.data")
        .compile_protos(&files, &[proto_dir])?;
    Ok(())
}
