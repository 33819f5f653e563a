//! The config loader on arbitrary TOML: an error sentence or a config, never a panic or a leaked
//! secret.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    recipient_gateway::fuzzing::config_load(data);
});
