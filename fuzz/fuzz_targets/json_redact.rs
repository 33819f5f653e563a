//! The strict JSON reader and the redactor, with the canary oracle of
//! `recipient_gateway::fuzzing::json_redact`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    recipient_gateway::fuzzing::json_redact(data);
});
