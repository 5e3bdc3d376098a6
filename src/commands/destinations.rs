//! `featpkg destinations`: what the installed features offer to the PBX's
//! destination pickers.

use std::path::PathBuf;

use clap::Args;

use featpkg::ops;

use super::{Outcome, PbxArgs};

/// The bundle holding the definitions, and the PBX.
#[derive(Args)]
pub struct DestinationsArgs {
    /// The bundle holding the feature definitions: archive or module directory
    /// (default: the module directory this featpkg binary was shipped in).
    #[arg(long, value_name = "PATH")]
    bundle: Option<PathBuf>,
    #[command(flatten)]
    pbx: PbxArgs,
}

/// Lists the destinations. The PBX is not opened as a session: no lock, no
/// recovery, since the PBX asks for them while featpkg's own install reloads it.
pub fn run(args: DestinationsArgs) -> Result<Outcome, ops::Error> {
    let list = ops::destinations::destinations(
        args.pbx.target,
        &args.pbx.target_options(),
        args.bundle.as_deref(),
    )?;
    Ok(Outcome::Destinations(list))
}
