#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mlctl_fuzz::capture(data));
