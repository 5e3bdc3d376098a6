//! `featpkg uninstall`: remove a bundle, or one of its features.

use clap::Args;

use featpkg::ops::{
    self,
    uninstall::{UninstallOutcome, UninstallRequest},
};

use super::{Outcome, PbxArgs, ReportArgs};

/// What to remove, and how to go about it.
#[derive(Args)]
pub struct UninstallArgs {
    name: String,
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    no_reload: bool,
    /// Remove blocks even if they were edited by hand.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pbx: PbxArgs,
}

/// Uninstalls from the PBX; a dry run changes nothing.
pub fn run(args: UninstallArgs) -> Result<Outcome, ops::Error> {
    let mut session = args.pbx.open_for_change(args.dry_run, &args.report)?;
    let request = UninstallRequest {
        name: args.name,
        dry_run: args.dry_run,
        no_reload: args.no_reload,
        force: args.force,
    };
    Ok(match ops::uninstall::uninstall(&mut session, &request)? {
        UninstallOutcome::DryRun(preview) => Outcome::Preview(preview),
        UninstallOutcome::Applied(applied) => Outcome::Applied(applied),
    })
}
