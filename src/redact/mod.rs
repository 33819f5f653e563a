//! The JSONPath rule engine: rules compiled at load time and applied to JSON bodies.

pub mod matcher;
pub mod path;
