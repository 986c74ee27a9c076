//! Generates the Rust types for every `.proto` under the workspace's `proto/` folder.
//!
//! protox parses the files in pure Rust (no `protoc` on the build machines), and prost-build turns
//! the descriptor set into code in `OUT_DIR`, one file per package (`stores.v1.rs`, ...). Type
//! names are enabled so every message implements `prost::Name` and thereby
//! `messaging::Message`. The descriptor set is also written to `OUT_DIR/descriptors.bin`: the
//! property tests generate valid messages of every catalogued type from it.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto").canonicalize()?;
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let mut files = Vec::new();
    collect_protos(&proto_root, &mut files)?;
    // A stable order keeps the generated code (and so incremental builds) deterministic.
    files.sort();
    for file in &files {
        // Directory watching only notices added or removed entries, not edits inside files.
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptors = protox::compile(&files, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("descriptors.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    prost_build::Config::new()
        .enable_type_names()
        .compile_fds(descriptors)?;
    Ok(())
}

/// Every `.proto` file below `dir`, recursively.
fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            // Watch subfolders too, so a new service folder triggers a rebuild.
            println!("cargo:rerun-if-changed={}", path.display());
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
