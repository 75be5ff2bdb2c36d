//! Support for the end-to-end tests: real Postgres, the AWS emulators, moto.

pub mod cloudformation;
pub mod fault_proxy;
pub mod harness;
pub mod histories;
pub mod iam;
pub mod log_groups;
pub mod moto;
pub mod network;
pub mod pglast;
pub mod rds_iam;
pub mod seed;
pub mod sql_gen;
