//! Local stand-ins for what Lambda gives the function in AWS: Postgres, Secrets Manager, the Runtime API.

pub mod bootstrap;
pub mod function;
pub mod invocation;
pub mod logging;
pub mod postgres;
pub mod rds_iam;
pub mod rie;
pub mod runtime_api;
pub mod secrets_manager;
pub mod tls;
