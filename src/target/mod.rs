//! Targets: one PBX flavour each. A target knows where each contribution lands,
//! how to reload the PBX and how to check the reload worked. Everything
//! PBX-specific lives behind this seam.

pub mod asterisk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::feature::{Location, PbxDir};

pub use asterisk::AsteriskTarget;

/// What a committed change needs from the PBX afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadRequest {
    /// Modules newly required (`module load`), e.g. `func_extstate.so`.
    pub load_modules: Vec<String>,
    /// The dialplan changed (`module reload pbx_config.so`).
    pub dialplan: bool,
    /// pjsip.conf changed (`module reload res_pjsip.so`).
    pub pjsip: bool,
    /// manager.conf changed (`manager reload`).
    pub manager: bool,
    /// Contexts that must exist afterwards (`dialplan show <context>`).
    pub expect_contexts: Vec<String>,
}

impl ReloadRequest {
    /// True when nothing needs reloading.
    pub fn is_empty(&self) -> bool {
        self.load_modules.is_empty()
            && !self.dialplan
            && !self.pjsip
            && !self.manager
            && self.expect_contexts.is_empty()
    }
}

/// A failed reload or post-reload check; the message quotes what the PBX said.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("could not run {command:?}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {output}")]
    Failed { command: String, output: String },
    #[error(
        "after reload, context [{context}] does not exist (`dialplan show {context}` said: {output})"
    )]
    MissingContext { context: String, output: String },
}

/// One PBX flavour.
pub trait Target {
    /// Short name (`asterisk`).
    fn name(&self) -> &'static str;
    /// Runtime paths of the PBX directories (as Asterisk sees them, without `--root`).
    fn runtime_dirs(&self) -> BTreeMap<PbxDir, String>;
    /// The runtime path of a location (what goes into config files).
    fn runtime_path(&self, location: &Location) -> String;
    /// Where a runtime path is on this machine (prefixed by `--root`).
    fn host_path(&self, runtime_path: &str) -> PathBuf;
    /// featpkg's own state directory (SQLite state, journal, lock) on this machine.
    fn state_dir(&self) -> PathBuf;
    /// The PBX root (`/` or `--root`).
    fn root(&self) -> &Path;
    /// Reloads the PBX for `request` and checks the result.
    fn reload(&self, request: &ReloadRequest) -> Result<Vec<String>, ReloadError>;
}
