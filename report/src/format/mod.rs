//! Pure formatters: a [`crate::model::Report`] in, bytes out through `impl Write`. They own
//! every byte of presentation: names, units, rounding, escaping, the history's JSON.

pub mod client_model;
pub mod json;
pub mod model;
pub mod native;
pub mod negotiate;
pub mod prometheus;
pub mod protobuf;
