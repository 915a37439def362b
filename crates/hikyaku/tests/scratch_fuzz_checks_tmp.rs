#![allow(clippy::unwrap_used)]
#[path = "it/corpus.rs"]
mod corpus;
#[path = "it/properties.rs"]
mod properties;
