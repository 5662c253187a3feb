//! cargo-fuzz target `request`: see `tributary_broker::fuzz::request` for the input's shape and
//! what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tributary_broker::fuzz::request(data));
