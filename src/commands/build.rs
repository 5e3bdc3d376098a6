//! `featpkg build`: the bundle archive from the sources.

use std::path::PathBuf;

use clap::Args;

use featpkg::ops::{self, build::BuildRequest};

use super::Outcome;

/// Where the sources and the static binaries are, and where the archive goes.
#[derive(Args)]
pub struct BuildArgs {
    /// Repository root holding module-manifest/ and packaging/.
    #[arg(long, default_value = ".")]
    source: PathBuf,
    /// Static binaries of one architecture: ARCH=DIR (x86_64, aarch64), or DIR
    /// (architecture told by a cargo triple in the path or the ELF machine).
    /// Repeatable; architectures not given come from the target dir.
    #[arg(long, value_name = "[ARCH=]DIR")]
    bin_dir: Vec<PathBuf>,
    /// Cargo target directory holding <triple>/release for each architecture
    /// (default: the one a --bin-dir sits in, else <source>/target).
    #[arg(long, value_name = "DIR")]
    target_dir: Option<PathBuf>,
    /// Architectures to ship, comma-separated (default: x86_64,aarch64).
    #[arg(long, value_delimiter = ',')]
    arch: Option<Vec<String>>,
    /// Output directory (default <source>/dist).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Builds the archive; the outcome is its path.
pub fn run(args: BuildArgs) -> Result<Outcome, ops::Error> {
    let path = ops::build::build(&BuildRequest {
        source_dir: args.source,
        bin_dirs: args.bin_dir,
        target_dir: args.target_dir,
        arches: args.arch,
        out_dir: args.out,
    })?;
    Ok(Outcome::Built(path))
}
