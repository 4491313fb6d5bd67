//! The checked-in generated code (used when `capnp` is not installed) must match the schema.

#[test]
fn checked_in_generated_code_matches_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = env!("CARGO_MANIFEST_DIR");
    capnpc::CompilerCommand::new()
        .src_prefix(manifest)
        .file(format!("{manifest}/imprint.capnp"))
        .output_path(dir.path())
        .run()
        .expect(
            "the capnp compiler (Debian package `capnproto`) is needed to check generated code",
        );
    let fresh = std::fs::read_to_string(dir.path().join("imprint_capnp.rs")).expect("read fresh");
    let checked_in = std::fs::read_to_string(format!("{manifest}/generated/imprint_capnp.rs"))
        .unwrap_or_default();
    if std::env::var_os("IMPRINT_REGENERATE").is_some() {
        std::fs::write(format!("{manifest}/generated/imprint_capnp.rs"), &fresh)
            .expect("write checked-in");
        return;
    }
    assert!(
        fresh == checked_in,
        "capnp/generated/imprint_capnp.rs is stale: regenerate it with \
         `IMPRINT_REGENERATE=1 cargo test -p imprint-schema`"
    );
}
