//! featpkg: builds PBX feature packages and installs them as reversible transactions.
//!
//! One module per concept of `DESIGN.md`; the CLI in `main.rs` only parses arguments
//! and prints what the library returns (`ops`).

#![warn(missing_docs)]

pub mod ami_address;
pub mod asterisk_config;
pub mod bundle;
mod byte_search;
pub mod change;
pub mod diff;
pub mod feature;
pub mod file_access;
pub mod hash;
pub mod identity;
pub mod marker;
pub mod ops;
pub mod pbx;
pub mod plan;
pub mod state;
pub mod txn;
