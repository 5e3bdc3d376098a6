//! featpkg-agid: one long-running FastAGI server on 127.0.0.1 that serves
//! every featpkg AGI feature's commands, so a call costs a loopback
//! connection instead of Asterisk forking a program (reference/asterisk.md §1).
//!
//! The dialplan reaches it as `AGI(agi://127.0.0.1:4573/<program>,args…)`;
//! `<program>` is the per-call program's name (`featpkg-operator-alert`) and
//! the code behind it is the same ([`featpkg_agi::AgiProgram`]). Each call
//! gets its own thread up to a cap ([`server`]) from a deep accept queue
//! ([`listen`]), and the bounds a per-call
//! program gets from its watchdog plus a few of its own ([`connection`],
//! [`stream`]).

pub mod connection;
pub mod listen;
pub mod server;
pub mod stream;

use featpkg_agi::Route;
use featpkg_busy_callback::commands::BusyCallback;
use featpkg_operator_alert::OperatorAlert;

/// The default port: FastAGI's registered port, Asterisk's default.
pub const DEFAULT_PORT: u16 = 4573;

/// Every program the server serves, by request path.
pub fn routes() -> Vec<Route> {
    vec![Route::to::<OperatorAlert>(), Route::to::<BusyCallback>()]
}
