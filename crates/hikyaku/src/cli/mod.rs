//! Command-line adapters of the queue and of local submission: they parse
//! arguments and talk to the running server (`hikyaku::control`).

pub mod queue;
pub mod store;
pub mod submit;
