//! Arbitrary bytes through `imprint policy check`'s parse and compile.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| imprint_fuzz::policy_parse(data));
