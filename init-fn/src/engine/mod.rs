//! The migration engine: the migrations compiled in from `sql/` (`migration`), the run of one action
//! under the advisory lock (`run`), one migration applied under production faults (`apply`), the
//! checksummed ledger (`ledger`), the session put back as a fresh one after each migration
//! (`fresh_session`), the `plan` action's view of pending statements (`pending`) and the
//! JSON report every action returns (`report`).
//!
//! May use `plan`, `schema`, `session`, `sql`, and `config`,
//! `deadline`, `error`; never `invocation`.

pub mod apply;
pub mod fresh_session;
pub mod ledger;
pub mod migration;
pub mod pending;
pub mod report;
pub mod run;
