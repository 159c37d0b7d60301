//! Pure formatters: a [`crate::report::Report`] in, bytes out through `impl Write`.

pub mod json;
pub mod model;
pub mod prometheus;
