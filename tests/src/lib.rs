//! Support for the end-to-end tests: real Postgres, the AWS emulators, moto.

pub mod harness;
pub mod moto;
