//! Support for hikyaku's fuzz targets: the invariant checks, shared with the
//! corpus replay in `cargo test`.

pub mod checks;
