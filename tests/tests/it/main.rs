//! The end-to-end tests, one module per subject, linked as one test binary (`it`): Cargo links it
//! once instead of once per file. Run one subject's tests with `cargo test -p tests --test it -- drift::`.

mod bad_inputs;
mod custom_resource;
mod deploy;
mod deploy_faults;
mod deploy_iam;
mod docker_provider;
mod drift;
mod emulators;
mod engine;
mod error_classes;
mod events;
mod faults;
mod iam_auth;
mod invoke;
mod invoke_local;
mod lint;
mod local_provider;
mod locks;
mod log_format;
mod logs;
mod migrate_new;
mod plan;
mod plan_names;
mod psql_sessions;
mod real_histories;
mod rie;
mod rotation;
mod row_counts;
mod sql_examples;
mod sql_split;
mod template;
mod test_local;
mod tls_psql;
