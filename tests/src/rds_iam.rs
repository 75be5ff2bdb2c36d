//! The PostgreSQL that checks RDS IAM tokens (PAM + a SigV4 verifier): it lives in
//! `xtask::local::rds_iam` so that `cargo xtask bench --auth iam` runs on the same server as the tests.

pub use xtask::local::rds_iam::*;
