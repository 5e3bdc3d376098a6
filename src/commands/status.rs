//! `featpkg status`: what is installed.

use clap::Args;

use featpkg::ops;

use super::{Outcome, PbxArgs};

/// The PBX to list, and in which form.
#[derive(Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pbx: PbxArgs,
}

/// Lists the installed bundles; reads only.
pub fn run(args: StatusArgs) -> Result<Outcome, ops::Error> {
    let session = args.pbx.open(true)?;
    Ok(Outcome::Status(ops::inspect::status(&session)?))
}
