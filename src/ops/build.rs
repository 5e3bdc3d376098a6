//! `featpkg build`: one reproducible archive in `dist/` from the repository's sources.

use std::path::PathBuf;

use super::Error;
use crate::bundle::{self, BuildOptions};

/// Builds the bundle. `SOURCE_DATE_EPOCH` (if set) fixes the archive timestamps.
pub fn build(
    source_dir: PathBuf,
    bin_dir: Option<PathBuf>,
    out_dir: Option<PathBuf>,
) -> Result<PathBuf, Error> {
    let bin_dir =
        bin_dir.unwrap_or_else(|| source_dir.join("target/x86_64-unknown-linux-musl/release"));
    let out_dir = out_dir.unwrap_or_else(|| source_dir.join("dist"));
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Some(v.trim().parse::<u64>().map_err(|_| {
            Error::Refused(format!(
                "SOURCE_DATE_EPOCH={v:?} must be a whole number of seconds"
            ))
        })?),
        Err(_) => None,
    };
    Ok(bundle::build(&BuildOptions {
        source_dir,
        bin_dir,
        out_dir,
        source_date_epoch,
    })?)
}
