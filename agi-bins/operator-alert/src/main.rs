//! featpkg-operator-alert: the per-call AGI program of the operator-alert
//! feature; its commands are [`featpkg_operator_alert::OperatorAlert`].

use std::process::ExitCode;

use featpkg_operator_alert::OperatorAlert;

fn main() -> ExitCode {
    featpkg_agi::run_stdio::<OperatorAlert>()
}
