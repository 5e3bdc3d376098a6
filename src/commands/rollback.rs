//! `featpkg rollback`: undo the last committed transaction.

use clap::Args;

use featpkg::ops::{
    self,
    rollback::{RollbackOutcome, RollbackRequest},
};

use super::{Outcome, PbxArgs, ReportArgs};

/// How to go about the undo.
#[derive(Args)]
pub struct RollbackArgs {
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    no_reload: bool,
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pbx: PbxArgs,
}

/// Rolls the PBX back one transaction; a dry run changes nothing.
pub fn run(args: RollbackArgs) -> Result<Outcome, ops::Error> {
    let mut session = args.pbx.open_for_change(args.dry_run, &args.report)?;
    let request = RollbackRequest {
        dry_run: args.dry_run,
        no_reload: args.no_reload,
        force: args.force,
    };
    Ok(match ops::rollback::rollback(&mut session, &request)? {
        RollbackOutcome::NothingToUndo => Outcome::Unchanged {
            dry_run: request.dry_run,
            summary: "nothing to roll back".into(),
        },
        RollbackOutcome::DryRun(preview) => Outcome::Preview(preview),
        RollbackOutcome::Applied(applied) => Outcome::Applied(applied),
    })
}
