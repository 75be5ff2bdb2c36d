//! The schema model: the canonical description of a schema (`model`, the text of `sql/schema.txt`), the
//! catalog reading it is made from (`catalog`, `description`), drift between the live and the expected
//! schema (`drift`), objects by identity (`objects`) and row counts that stay cheap (`rows`).
//!
//! May use `session` and `config`, `error`. `model`, `catalog` and `description` reach each
//! other as `super::…` only: `cargo xtask schema` and `init-fn/build.rs` compile them from source.

pub mod catalog;
pub mod description;
pub mod drift;
pub mod model;
pub mod objects;
pub mod rows;
