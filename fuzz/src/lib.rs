//! Shared invariants for the fuzz targets; see `checks.rs` and
//! `head_checks.rs`.

pub mod checks;
pub mod head_checks;
