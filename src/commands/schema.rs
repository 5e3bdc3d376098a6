//! `featpkg schema`: a bundle's features and parameters, for a settings page.

use std::path::PathBuf;

use clap::Args;

use featpkg::ops;
use featpkg::pbx::TargetKind;

use super::Outcome;

/// The bundle, and the PBX flavour to describe it for.
#[derive(Args)]
pub struct SchemaArgs {
    /// Print JSON (the only format a page should read).
    #[arg(long)]
    pub json: bool,
    /// The bundle: archive or module directory (default: the module
    /// directory this featpkg binary was shipped in).
    #[arg(long, value_name = "PATH")]
    bundle: Option<PathBuf>,
    /// PBX flavour the `unsupported` reasons are for.
    #[arg(long, default_value = "asterisk")]
    target: TargetKind,
}

/// Reads the bundle (by default the one this binary was shipped in); touches no PBX.
pub fn run(args: SchemaArgs) -> Result<Outcome, ops::Error> {
    let path = match args.bundle {
        Some(path) => path,
        None => ops::destinations::own_bundle_dir().ok_or_else(|| {
            ops::Error::Refused(
                "featpkg schema needs a bundle: give --bundle PATH (its archive or module directory); no bundle.json was found around the featpkg binary".into(),
            )
        })?,
    };
    Ok(Outcome::Schema(ops::schema::schema(args.target, &path)?))
}
