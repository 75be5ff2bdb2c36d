//! Support for the end-to-end tests: real Postgres, the AWS emulators, moto.

pub mod fault_proxy;
pub mod harness;
pub mod iam;
pub mod moto;
pub mod pglast;
pub mod seed;
pub mod sql_gen;
