//! `featpkg install`: install, reconfigure or upgrade a bundle's features.

use std::path::PathBuf;

use clap::Args;

use featpkg::ops::{
    self,
    install::{InstallOutcome, InstallRequest},
};

use super::{Outcome, PbxArgs, ReportArgs};

/// The archive, the features and their parameters, and how to go about it.
#[derive(Args)]
pub struct InstallArgs {
    archive: PathBuf,
    /// Features to install, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    features: Option<Vec<String>>,
    /// Set a parameter: feature.param=value (repeatable).
    #[arg(long = "set", value_name = "FEATURE.PARAM=VALUE")]
    sets: Vec<String>,
    /// Parameters from a JSON file: {"feature": {"param": value}}; --set wins.
    #[arg(long = "params", value_name = "FILE.json")]
    params_file: Option<PathBuf>,
    /// Print the unified diff of every change and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not reload Asterisk (and do not check the reload).
    #[arg(long)]
    no_reload: bool,
    /// Overwrite hand edits inside featpkg's own blocks.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pbx: PbxArgs,
}

/// Installs on the PBX; a dry run changes nothing (and creates nothing).
pub fn run(args: InstallArgs) -> Result<Outcome, ops::Error> {
    let mut session = args.pbx.open_for_change(args.dry_run, &args.report)?;
    let request = InstallRequest {
        archive: args.archive,
        features: args.features,
        sets: args.sets,
        params_file: args.params_file,
        dry_run: args.dry_run,
        no_reload: args.no_reload,
        force: args.force,
    };
    Ok(match ops::install::install(&mut session, &request)? {
        InstallOutcome::UpToDate { bundle, version } => Outcome::Unchanged {
            dry_run: request.dry_run,
            summary: format!("{bundle} {version} is up to date; nothing changed"),
        },
        InstallOutcome::DryRun(preview) => Outcome::Preview(preview),
        InstallOutcome::Applied(applied) => Outcome::Applied(applied),
    })
}
