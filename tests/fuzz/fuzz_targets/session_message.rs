//! Arbitrary packets through the collector's session-socket decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    imprint_fuzz::session_message(data);
});
