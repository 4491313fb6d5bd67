//! Arbitrary key, focus and SYN streams through the policy filter at `full` with redaction.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    imprint_fuzz::text_rebuild(data);
});
