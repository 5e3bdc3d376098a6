//! `featpkg recover`: finish an interrupted transaction.

use clap::Args;

use featpkg::ops;

use super::{Outcome, PbxArgs};

/// The PBX to recover.
#[derive(Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    pbx: PbxArgs,
}

/// Opens the PBX, which is what recovers it.
pub fn run(args: RecoverArgs) -> Result<Outcome, ops::Error> {
    let session = args.pbx.open(false)?;
    Ok(Outcome::Recovered {
        found: session.recovered.is_some(),
    })
}
