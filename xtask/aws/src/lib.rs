//! The AWS half of `cargo xtask`: deploy, invoke, clean, template, logs and run, with the SDK
//! service crates only they need. `cargo xtask deploy|invoke|clean|template|logs|run` runs this
//! crate's binary (built on first use), so `test-local`, `build`, `serve` and `bench` never compile
//! the AWS SDK.
//!
//! Layers, lowest first: `aws_error` (what an SDK error says), `retry` (the one retry and wait
//! policy), `aws` (settings and clients), `routes` (the VPC's endpoints and route tables),
//! `preflight` and `s3_preflight` (discovery and network checks), `yaml` (a small writer), then the
//! commands `deploy`, `invoke`, `clean`, `template` (which renders deploy's desired state).

pub mod aws;
pub mod aws_error;
pub mod clean;
pub mod deploy;
pub mod invoke;
pub mod log_view;
pub mod logs;
pub mod preflight;
pub mod retry;
pub mod routes;
pub mod run;
pub mod s3_preflight;
pub mod template;
pub mod yaml;
