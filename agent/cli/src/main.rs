//! The `imprint` binary.

fn main() {
    std::process::exit(imprint::ctl::main());
}
