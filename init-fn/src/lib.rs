//! `init-fn`: brings the `documents_db` schema up to date from inside the VPC. One invocation goes
//! down these layers, each using only the ones below it (and the three beside them):
//!
//! event → secret → TLS session → migration engine → report (→ a custom resource's answer).

pub mod engine; // the migration engine: migrations, the locked run, apply, ledger, the plan action, the report
pub mod invocation; // one Lambda event from start to answer: event, handler, custom-resource answer, logs, metrics
pub mod plan; // lock classification: the table lock each statement takes (std only)
pub mod schema; // the schema model: catalog reading, expected schema, drift, objects, row counts
pub mod session; // the database session: connect, TLS, the secret
pub mod sql; // the SQL lexer: statements cut where psql cuts them (std only)

// Beside every layer.
pub mod config; // the settings, read once from the environment
pub mod deadline; // the invocation's deadline, computed once and passed down
pub mod error; // the named failures (`errorType`), one line each

pub use crate::invocation::handler::{Kept, Response, State, handle, handle_parsed};
pub use crate::{
    config::Config,
    deadline::Deadline,
    engine::report::Action,
    engine::report::Report,
    error::InitError,
    invocation::event::{Request, Work},
};
