//! Generates the metadata records' protobuf types (`proto/cairn/metadata.proto`) with
//! prost-build, using the `protoc` shipped in the protoc-bin-vendored crate so that nothing
//! has to be installed by hand. Maps are generated as `BTreeMap`, like the domain types,
//! so that encoding a record or a snapshot is deterministic.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not with env!(): Cargo shares one compiled build script between
    // checkouts of the workspace in different folders (a CI clone and the work tree use
    // the same target directory), so a path baked in at compile time can name a folder
    // that no longer exists.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let proto_dir = std::path::Path::new(&manifest_dir).join("../../proto");
    let proto = proto_dir.join("cairn/metadata.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from here.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    prost_build::Config::new()
        .btree_map(["."])
        .compile_protos(&[proto], &[proto_dir])?;
    Ok(())
}
