//! `featpkg verify`: whether featpkg's files and blocks are as it wrote them.

use clap::Args;

use featpkg::ops;

use super::{Outcome, PbxArgs};

/// The PBX to check, and in which form to report.
#[derive(Args)]
pub struct VerifyArgs {
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pbx: PbxArgs,
}

/// Checks every installed edit; reads only.
pub fn run(args: VerifyArgs) -> Result<Outcome, ops::Error> {
    let session = args.pbx.open(true)?;
    Ok(Outcome::Drift(ops::inspect::verify(&session)?))
}
