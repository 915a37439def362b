//! The pages' languages and messages live in [`crate::i18n`], beside the
//! reasons the library stores; re-exported here for the pages.

pub use crate::i18n::*;
