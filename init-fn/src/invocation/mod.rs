//! The invocation: one Lambda event from start to answer. The event parsed into one request whoever sent
//! it (`event`), the state built once at cold start and the handler (`handler`), the custom-resource
//! answer (`custom_resource`), the log lines (`log`) and the EMF metrics (`metrics`).
//!
//! May use every layer below: `engine` and what it uses, and `config`, `deadline`, `error`.

pub mod custom_resource;
pub mod event;
pub mod handler;
pub mod log;
pub mod metrics;
