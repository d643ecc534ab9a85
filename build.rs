use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("handoff_descriptor.bin"))
        // Undecodable requests answer INVALID_ARGUMENT and are counted (src/grpc/codec.rs).
        .codec_path("crate::grpc::codec::StrictCodec")
        .compile_protos(&["proto/handoff/v1/handoff.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
