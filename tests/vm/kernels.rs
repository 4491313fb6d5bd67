//! The kernel matrix: the eBPF-vs-evdev equivalence scenario (`ebpf::same_sequence`) on
//! Debian 11's 5.10 and Debian 13's 6.12, unpacked from Debian's packages into
//! `target/kernels/<suite>` by `tests/vm/fetch-kernels.sh` (Debian 12's 6.1, the host's own
//! kernel, is `ebpf::ebpf_and_evdev_capture_the_same_sequence`). Each prints a
//! `kernel-matrix:` line with the kernel, the source, the eBPF state and the events.

use crate::ebpf::same_sequence;
use crate::harness::Kernel;

#[test]
fn kernel_matrix_bullseye_5_10() {
    same_sequence(Kernel::Bullseye, "kernel_matrix_bullseye_5_10");
}

#[test]
fn kernel_matrix_trixie_6_12() {
    same_sequence(Kernel::Trixie, "kernel_matrix_trixie_6_12");
}
