//! Generates the metadata quorum's gRPC service (`proto/cairn/quorum.proto`) with
//! tonic-prost-build, using the `protoc` shipped in the protoc-bin-vendored crate so that
//! nothing has to be installed by hand.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not with env!(): Cargo shares one compiled build script between
    // checkouts of the workspace in different folders (a CI clone and the work tree use
    // the same target directory), so a path baked in at compile time can name a folder
    // that no longer exists.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let proto_dir = std::path::Path::new(&manifest_dir).join("../../proto");
    let proto = proto_dir.join("cairn/quorum.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from here.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&[proto], &[proto_dir])?;
    Ok(())
}
