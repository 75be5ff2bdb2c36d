//! Lock classification: what each statement kind does to an existing table, the table lock it takes
//! (PostgreSQL's "Explicit Locking" table, `ALTER TABLE`'s actions in `alter_table.rs`) read from its
//! words (`words.rs`).
//!
//! Std only and free of `crate::` paths: `cargo xtask lint` compiles `locks.rs` from its source.

pub mod locks;
