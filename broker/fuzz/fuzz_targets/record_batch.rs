//! cargo-fuzz target `record_batch`: see `tributary_broker::fuzz::record_batch` for the input's shape and
//! what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_broker::fuzz::record_batch(data));
