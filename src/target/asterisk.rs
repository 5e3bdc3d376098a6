//! The plain Asterisk target: paths from `asterisk.conf` `[directories]`,
//! reload through the Asterisk CLI (`asterisk -rx`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{ReloadError, ReloadRequest, Target};
use crate::feature::{Location, PbxDir};

/// Environment variable naming the Asterisk CLI command (e.g. `asterisk -C /etc/asterisk/asterisk.conf`).
pub const ASTERISK_CMD_ENV: &str = "FEATPKG_ASTERISK_CMD";

/// Asterisk's compiled-in defaults, used for keys `asterisk.conf` does not set.
const DEFAULT_DIRS: [(PbxDir, &str, &str); 6] = [
    (PbxDir::Etc, "astetcdir", "/etc/asterisk"),
    (PbxDir::Agi, "astagidir", "/var/lib/asterisk/agi-bin"),
    (PbxDir::VarLib, "astvarlibdir", "/var/lib/asterisk"),
    (PbxDir::Data, "astdatadir", "/var/lib/asterisk"),
    (PbxDir::Spool, "astspooldir", "/var/spool/asterisk"),
    (PbxDir::Log, "astlogdir", "/var/log/asterisk"),
];

/// The default location of asterisk.conf.
pub const DEFAULT_ASTERISK_CONF: &str = "/etc/asterisk/asterisk.conf";

/// Why the target could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("asterisk.conf not found at {0} (point to it with --asterisk-conf PATH)")]
    MissingAsteriskConf(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A plain Asterisk box (or a tree shaped like one under `--root`).
#[derive(Debug, Clone)]
pub struct AsteriskTarget {
    root: PathBuf,
    dirs: BTreeMap<PbxDir, String>,
    cli: Vec<String>,
}

impl AsteriskTarget {
    /// Reads `asterisk_conf` (a runtime path, placed under `root`) and sets up the target.
    /// `cli` is the Asterisk CLI command; `None` = `$FEATPKG_ASTERISK_CMD` or `asterisk`.
    pub fn open(
        root: &Path,
        asterisk_conf: Option<&str>,
        cli: Option<&str>,
    ) -> Result<AsteriskTarget, TargetError> {
        let conf_runtime = asterisk_conf.unwrap_or(DEFAULT_ASTERISK_CONF);
        let conf_host = prefixed(root, conf_runtime);
        let text = match std::fs::read(&conf_host) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TargetError::MissingAsteriskConf(conf_host));
            }
            Err(source) => {
                return Err(TargetError::Read {
                    path: conf_host,
                    source,
                });
            }
        };
        let parsed = crate::asterisk_config::parse(&text, "asterisk.conf").map_err(|e| {
            TargetError::Invalid {
                path: conf_host.clone(),
                message: e.to_string(),
            }
        })?;
        let mut dirs = BTreeMap::new();
        for (dir, key, default) in DEFAULT_DIRS {
            let value = parsed
                .sections
                .iter()
                .filter(|s| s.name == "directories")
                .flat_map(|s| s.entries.iter())
                .filter(|e| e.key == key)
                .map(|e| e.value.trim().to_string())
                .next_back()
                .unwrap_or_else(|| default.to_string());
            if !value.starts_with('/') || value.split('/').any(|p| p == "..") {
                return Err(TargetError::Invalid {
                    path: conf_host.clone(),
                    message: format!(
                        "[directories] {key} = {value:?} must be an absolute path without '..'"
                    ),
                });
            }
            dirs.insert(dir, value.trim_end_matches('/').to_string());
        }
        dirs.insert(PbxDir::SysEtc, "/etc".to_string());
        let cli = match cli
            .map(str::to_string)
            .or_else(|| std::env::var(ASTERISK_CMD_ENV).ok())
        {
            Some(cmd) => cmd.split_whitespace().map(str::to_string).collect(),
            None if asterisk_conf.is_some() && root == Path::new("/") => {
                vec!["asterisk".into(), "-C".into(), conf_runtime.into()]
            }
            None => vec!["asterisk".into()],
        };
        if cli.is_empty() {
            return Err(TargetError::Invalid {
                path: conf_host,
                message: format!("{ASTERISK_CMD_ENV} / --asterisk-cmd is empty"),
            });
        }
        Ok(AsteriskTarget {
            root: root.to_path_buf(),
            dirs,
            cli,
        })
    }

    /// Runs one CLI command (`<cli> -rx <command>`) and returns its output.
    pub(crate) fn run_cli(&self, command: &str) -> Result<String, ReloadError> {
        let shown = format!("{} -rx \"{command}\"", self.cli.join(" "));
        let text = super::run_command(&self.cli, &["-rx", command], &shown)?;
        // `asterisk -rx` fails when it cannot reach the daemon; commands that fail
        // inside Asterisk still exit 0, so the callers read the text too.
        if text.starts_with("Unable to connect") {
            return Err(ReloadError::Failed {
                command: shown,
                output: text,
            });
        }
        Ok(text)
    }

    fn reload_module(&self, module: &str) -> Result<String, ReloadError> {
        let command = format!("module reload {module}");
        let out = self.run_cli(&command)?;
        // `dialplan reload` always claims success; `module reload` reports failure
        // (reference/asterisk.md §3), so only its success line is accepted.
        if out.contains("reloaded successfully") {
            Ok(format!("{command}: {out}"))
        } else {
            Err(ReloadError::Failed {
                command,
                output: out,
            })
        }
    }
}

/// `root` + an absolute runtime path.
fn prefixed(root: &Path, runtime: &str) -> PathBuf {
    root.join(runtime.trim_start_matches('/'))
}

impl Target for AsteriskTarget {
    fn name(&self) -> &'static str {
        "asterisk"
    }

    fn runtime_dirs(&self) -> BTreeMap<PbxDir, String> {
        self.dirs.clone()
    }

    fn runtime_path(&self, location: &Location) -> String {
        format!("{}/{}", self.dirs[&location.dir], location.rel)
    }

    fn host_path(&self, runtime_path: &str) -> PathBuf {
        prefixed(&self.root, runtime_path)
    }

    fn state_dir(&self) -> PathBuf {
        self.host_path(&format!("{}/featpkg", self.dirs[&PbxDir::VarLib]))
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn reload(&self, request: &ReloadRequest) -> Result<Vec<String>, ReloadError> {
        let mut said = Vec::new();
        for module in &request.load_modules {
            let show = self.run_cli(&format!("module show like {module}"))?;
            let name = module.trim_end_matches(".so");
            let loaded = show.lines().any(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|first| first.trim_end_matches(".so") == name)
            });
            if loaded {
                said.push(format!("module {module}: already loaded"));
                continue;
            }
            let command = format!("module load {module}");
            let out = self.run_cli(&command)?;
            if out.contains("Loaded") && !out.contains("Unable") {
                said.push(format!("{command}: {out}"));
            } else {
                return Err(ReloadError::Failed {
                    command,
                    output: out,
                });
            }
        }
        if request.pjsip {
            said.push(self.reload_module("res_pjsip.so")?);
        }
        if request.manager {
            // `manager reload` prints nothing; read the users back to check ours is known.
            self.run_cli("manager reload")?;
            said.push("manager reload".into());
        }
        if request.dialplan {
            said.push(self.reload_module("pbx_config.so")?);
        }
        for context in &request.expect_contexts {
            let out = self.run_cli(&format!("dialplan show {context}"))?;
            if out.contains("There is no existence of") || !out.contains(&format!("'{context}'")) {
                return Err(ReloadError::MissingContext {
                    context: context.clone(),
                    output: out,
                });
            }
            said.push(format!("context [{context}] is loaded"));
        }
        Ok(said)
    }
}
