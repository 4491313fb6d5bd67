//! Builds imprint's eBPF programs (`ebpf/imprint-ebpf`) with aya-build, when the BPF toolchain
//! is present: the `nightly` toolchain with `rust-src`, and `bpf-linker` on PATH. Then the
//! object is embedded and `cfg(imprint_ebpf)` is set. Without the toolchain the binary is built
//! without eBPF (a `cargo:warning` says so) and the collector captures with evdev.
//!
//! - `IMPRINT_REQUIRE_EBPF=1` turns a missing toolchain or a failed eBPF build into a build
//!   error (CI and the VM harness set it, so the eBPF tests never silently test nothing).
//! - `IMPRINT_NO_EBPF=1` skips the eBPF build even when the toolchain is there.
//!
//! The BPF crate is built by a separate cargo for `bpfel-unknown-none` in its own target
//! directory under OUT_DIR; aya-build sets `CARGO_ENCODED_RUSTFLAGS` for it, which takes
//! precedence over any RUSTFLAGS of the outer build (such as the VM harness's
//! `-C target-feature=+crt-static`), and passes its own `--target` and `--target-dir`.

use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE: &str = "imprint-ebpf";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(imprint_ebpf)");
    for var in [
        "IMPRINT_REQUIRE_EBPF",
        "IMPRINT_NO_EBPF",
        "PATH",
        "RUSTUP_TOOLCHAIN",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let require = flag("IMPRINT_REQUIRE_EBPF");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let ebpf_dir = manifest.join("../../ebpf");
    let root = ebpf_dir.join(PACKAGE);
    // The shared record definitions live beside the programs.
    println!(
        "cargo:rerun-if-changed={}",
        ebpf_dir.join("common").display()
    );

    if flag("IMPRINT_NO_EBPF") {
        if require {
            panic!("IMPRINT_REQUIRE_EBPF=1 and IMPRINT_NO_EBPF=1 contradict each other");
        }
        println!("cargo:warning=IMPRINT_NO_EBPF=1: building imprint without eBPF (evdev only)");
        return;
    }
    if let Err(why) = toolchain() {
        if require {
            panic!("IMPRINT_REQUIRE_EBPF=1 but the BPF toolchain is missing: {why}");
        }
        println!(
            "cargo:warning=building imprint without eBPF (evdev only): {why}. \
             Install it with tests/setup.sh, or set IMPRINT_REQUIRE_EBPF=1 to make this an error"
        );
        return;
    }
    // aya-build runs `cargo build --package imprint-ebpf` in the current directory; the BPF
    // crate is excluded from the workspace, so it must run in the crate's own directory.
    std::env::set_current_dir(&root).expect("entering ebpf/imprint-ebpf");
    // Only errors from the nested build are interesting; its progress lines are not.
    std::env::set_var("CARGO_TERM_QUIET", "true");
    let root_str = root.to_str().expect("a UTF-8 path");
    let built = aya_build::build_ebpf(
        [aya_build::Package {
            name: PACKAGE,
            root_dir: root_str,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    );
    match built {
        Ok(()) => println!("cargo:rustc-cfg=imprint_ebpf"),
        Err(e) if require => panic!("IMPRINT_REQUIRE_EBPF=1 but the eBPF build failed: {e:#}"),
        Err(e) => println!(
            "cargo:warning=building imprint without eBPF (evdev only): the eBPF build failed: {e:#}"
        ),
    }
}

fn flag(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Checks for `rustup`, the nightly toolchain with rust-src, and bpf-linker on PATH.
fn toolchain() -> Result<(), String> {
    let out = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output()
        .map_err(|e| format!("rustup is not available ({e})"))?;
    if !out.status.success() {
        return Err(
            "the nightly toolchain is not installed (rustup toolchain install nightly)".into(),
        );
    }
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let src = Path::new(&sysroot).join("lib/rustlib/src/rust/library/core");
    if !src.is_dir() {
        return Err(
            "nightly lacks rust-src (rustup component add rust-src --toolchain nightly)".into(),
        );
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if !std::env::split_paths(&path).any(|d| d.join("bpf-linker").is_file()) {
        return Err(
            "bpf-linker is not on PATH (cargo install bpf-linker, built against LLVM 22)".into(),
        );
    }
    Ok(())
}
