//! The AWS half of `cargo xtask`: deploy, invoke, clean, logs and run, with the SDK service crates only they need.
//! `cargo xtask deploy|invoke|clean` runs this crate's binary (built on first use), so `test-local`,
//! `build`, `serve` and `bench` never compile the AWS SDK.
//!
//! Layers, lowest first: `aws_error` (what an SDK error says), `retry` (the one retry and wait
//! policy), `aws` (settings and clients), `preflight` (discovery and network checks), then the
//! commands `deploy`, `invoke`, `clean`.

pub mod aws;
pub mod aws_error;
pub mod clean;
pub mod deploy;
pub mod invoke;
pub mod log_view;
pub mod logs;
pub mod preflight;
pub mod retry;
pub mod run;
pub mod s3_preflight;
