//! Generates the Rust code for `imprint.capnp` with the `capnp` compiler when it is installed,
//! and otherwise uses the checked-in copy in `generated/` (kept current by a test), so a plain
//! `cargo build` works on a machine without Debian's `capnproto` package.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=imprint.capnp");
    println!("cargo:rerun-if-changed=generated/imprint_capnp.rs");
    // Installing the capnp compiler later switches to generating at build time.
    println!("cargo:rerun-if-env-changed=PATH");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let generated = capnpc::CompilerCommand::new()
        .file("imprint.capnp")
        .output_path(&out_dir)
        .run();
    if let Err(e) = generated {
        println!(
            "cargo:warning=capnp compiler unavailable ({e}); using the checked-in generated/imprint_capnp.rs"
        );
        std::fs::copy(
            "generated/imprint_capnp.rs",
            Path::new(&out_dir).join("imprint_capnp.rs"),
        )
        .expect("copy checked-in generated code");
    }
}
