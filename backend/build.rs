//! Embeds the built settings page (`dist/`, made by `trunk build --release`)
//! in the binary, precompressed, so `mailroom` is one self-contained file.
//! Without a build, a one-page notice is embedded instead.

use std::path::PathBuf;

const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Mailroom</title></head><body><p>This Mailroom binary was built without its settings page. Run <code>cargo xtask build-ui</code> and build again, or point <code>--static-dir</code> at a Trunk build.</p></body></html>";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let dist = manifest.join("../dist");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed={}", dist.display());
    std::env::set_var("MEMORY_SERVE_QUIET", "1");
    let dir = if dist.join("index.html").is_file() {
        dist
    } else {
        let empty = out.join("ui-not-built");
        std::fs::create_dir_all(&empty).expect("create the placeholder UI dir");
        std::fs::write(empty.join("index.html"), NOT_BUILT).expect("write the placeholder page");
        empty
    };
    std::fs::copy(dir.join("index.html"), out.join("ui_index.html")).expect("copy index.html");
    memory_serve::load_directory_with_embed(dir, true);
}
