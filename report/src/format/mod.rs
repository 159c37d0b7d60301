//! Pure formatters: a [`crate::report::Report`] in, bytes out through `impl Write`.

pub mod client_model;
pub mod json;
pub mod model;
pub mod native;
pub mod negotiate;
pub mod prometheus;
pub mod protobuf;
