//! The featpkg command line: parses the arguments, runs one command, prints
//! its outcome and exits with its code. Each command's arguments and their
//! translation into a library request live in `commands/` (cargo's layout);
//! what the command does lives in the library's `ops`.

mod commands;

use std::process::ExitCode;

use clap::Parser;

use commands::{Command, Outcome};

#[derive(Parser)]
#[command(
    name = "featpkg",
    version,
    about = "Reversible feature packages for Asterisk-based PBXs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .init();
    let Cli { command } = Cli::parse();
    // Decided before the command runs: an error prints in the form its
    // `--json` asked for, whenever it happens.
    let format = command.format();
    match command.run() {
        Ok(outcome) => {
            outcome.print(format);
            exit_code(&outcome)
        }
        Err(error) => {
            commands::output::print_error(&error, format);
            ExitCode::from(2)
        }
    }
}

/// 0, or 1 when `verify` found drift (a script's `featpkg verify || …`).
/// Errors exit 2, as clap's usage errors do.
fn exit_code(outcome: &Outcome) -> ExitCode {
    if outcome.found_drift() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
