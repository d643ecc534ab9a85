use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Only Rust and a C compiler needed: without PROTOC set or protoc installed, use the protoc
    // binary the protoc-bin-vendored crate ships.
    if std::env::var_os("PROTOC").is_none() && !on_path("protoc") {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("handoff_descriptor.bin"))
        // Undecodable requests answer INVALID_ARGUMENT and are counted (src/grpc/codec.rs).
        .codec_path("crate::grpc::codec::StrictCodec")
        .compile_protos(&["proto/handoff/v1/handoff.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    Ok(())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
