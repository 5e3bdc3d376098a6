//! featpkg-busy-callback: the per-call AGI program of the busy-callback
//! feature; its commands are [`featpkg_busy_callback::commands::BusyCallback`].

use std::process::ExitCode;

use featpkg_busy_callback::commands::BusyCallback;

fn main() -> ExitCode {
    featpkg_agi::run_stdio::<BusyCallback>()
}
