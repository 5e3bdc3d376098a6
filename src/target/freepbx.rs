//! The FreePBX target (16 and 17). Not written yet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{ReloadError, ReloadRequest, Target, TargetError, TargetOptions};
use crate::feature::{Location, PbxDir};

/// A FreePBX box.
#[derive(Debug, Clone)]
pub struct FreepbxTarget {
    root: PathBuf,
}

impl FreepbxTarget {
    /// Sets up the target from the command line's options.
    pub fn open(options: &TargetOptions) -> Result<FreepbxTarget, TargetError> {
        Err(TargetError::Invalid {
            path: options.root.clone(),
            message: "the freepbx target is not implemented yet".into(),
        })
    }
}

impl Target for FreepbxTarget {
    fn name(&self) -> &'static str {
        "freepbx"
    }
    fn runtime_dirs(&self) -> BTreeMap<PbxDir, String> {
        BTreeMap::new()
    }
    fn runtime_path(&self, location: &Location) -> String {
        location.rel.clone()
    }
    fn host_path(&self, runtime_path: &str) -> PathBuf {
        self.root.join(runtime_path.trim_start_matches('/'))
    }
    fn state_dir(&self) -> PathBuf {
        self.root.clone()
    }
    fn root(&self) -> &Path {
        &self.root
    }
    fn reload(&self, _request: &ReloadRequest) -> Result<Vec<String>, ReloadError> {
        Ok(Vec::new())
    }
}
