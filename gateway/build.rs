//! Decides whether the web UI is embedded: when `ui/dist/index.html` exists (built by
//! `scripts/build-ui.sh`), sets the `agenttier_ui` cfg that turns on `src/ui.rs`'s rust-embed.
//! The Rust build never runs Node; without a built UI the binary serves a how-to-build page.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(agenttier_ui)");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let ui = Path::new(&manifest).join("../ui");
    let dist = ui.join("dist");
    if dist.join("index.html").is_file() {
        println!("cargo::rustc-cfg=agenttier_ui");
        // Any rebuilt file (new hashed names included) re-embeds the UI.
        println!("cargo::rerun-if-changed={}", dist.display());
    } else if ui.is_dir() {
        // Watch the UI folder so that building it later is picked up (a missing path would
        // make cargo rerun this script on every build).
        println!("cargo::rerun-if-changed={}", ui.display());
    } else {
        println!("cargo::rerun-if-changed=build.rs");
    }
}
