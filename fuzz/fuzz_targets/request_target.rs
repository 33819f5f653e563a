//! The request-target and header normalisation, with the upstream models of
//! `recipient_gateway::fuzzing::upstreams` as the oracle.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    recipient_gateway::fuzzing::request_target(data);
});
