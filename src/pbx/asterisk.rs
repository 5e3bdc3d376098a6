//! The plain Asterisk target: paths from `asterisk.conf` `[directories]`,
//! reload through the Asterisk CLI (`asterisk -rx`).
//!
//! A feature's cron block (`sysetc:crontab`, the system crontab's format with
//! the user column) goes, as a Debian package's would, into a file of its own
//! in `/etc/cron.d`: `featpkg-<feature>` (cron.d names must be letters, digits,
//! `_` and `-` only, or Debian's cron ignores the file; reference/installers.md
//! §5), mode 0644, owned by root, created when missing and removed once empty.
//! `/etc/crontab` itself is never edited, and need not exist.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{PlaceError, RecordLoad, ReloadError, ReloadRequest, Target};
use crate::feature::{Location, PbxDir, RenderedContent, RenderedEdit};

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
    /// asterisk.conf is not where it was looked for; holds its path on this
    /// machine (`--root` included): `/etc/asterisk/asterisk.conf`.
    #[error("asterisk.conf not found at {0} (point to it with --asterisk-conf PATH)")]
    MissingAsteriskConf(PathBuf),
    /// A configuration file the target reads to set itself up (asterisk.conf,
    /// manager.conf) exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file's path on this machine: `/etc/asterisk/asterisk.conf`.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A setting the target needs is unusable: asterisk.conf does not parse,
    /// a `[directories]` entry is not an absolute path, a command option is empty.
    #[error("{path}: {message}")]
    Invalid {
        /// Where the setting comes from: asterisk.conf's path, or the PBX
        /// root (`--root`) for a command-line option.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
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
            let Some(value) = super::absolute_dir(&value) else {
                return Err(TargetError::Invalid {
                    path: conf_host.clone(),
                    message: format!(
                        "[directories] {key} = {value:?} must be an absolute path without '..'"
                    ),
                });
            };
            dirs.insert(dir, value);
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

/// The directory of cron's drop-in files (relative to the system's `/etc`).
pub const CRON_D: &str = "cron.d";
/// Prefix of the cron.d files featpkg owns: `featpkg-<feature>`.
pub const CRON_D_PREFIX: &str = "featpkg-";

/// True for a name Debian's cron reads in /etc/cron.d: `^[a-zA-Z0-9_-]+$`
/// (a name with a dot, like a `.dpkg-dist` leftover, is ignored).
pub fn valid_cron_d_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl AsteriskTarget {
    /// The cron.d file (runtime path) a feature's cron block goes into.
    pub fn cron_d_path(&self, feature: &str) -> Result<String, String> {
        let name = format!("{CRON_D_PREFIX}{feature}");
        if !valid_cron_d_name(&name) {
            return Err(format!(
                "cron.d file name {name:?} would be ignored by cron: only letters, digits, '_' and '-' are allowed"
            ));
        }
        Ok(format!("{}/{CRON_D}/{name}", self.dirs[&PbxDir::SysEtc]))
    }

    /// True for a cron.d file featpkg puts its blocks in.
    fn is_our_cron_d_file(&self, runtime_path: &str) -> bool {
        let dir = format!("{}/{CRON_D}/", self.dirs[&PbxDir::SysEtc]);
        runtime_path
            .strip_prefix(&dir)
            .and_then(|name| name.strip_prefix(CRON_D_PREFIX))
            .is_some_and(|rest| !rest.is_empty() && valid_cron_d_name(rest))
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

    fn place(
        &self,
        edits: Vec<(Location, RenderedEdit)>,
    ) -> Result<Vec<(String, RenderedEdit)>, PlaceError> {
        let mut placed = Vec::with_capacity(edits.len());
        for (location, edit) in edits {
            let system_crontab = location.dir == PbxDir::SysEtc && location.rel == "crontab";
            let runtime_path = match &edit.content {
                RenderedContent::Block { comment, .. } if system_crontab => {
                    let refuse = |message: String| PlaceError {
                        edit: edit.edit_id.clone(),
                        message,
                    };
                    if *comment != '#' {
                        return Err(refuse("a crontab block needs '#' markers".into()));
                    }
                    // Same format as /etc/crontab (with the user column): the body stays.
                    self.cron_d_path(&edit.feature).map_err(refuse)?
                }
                _ => self.runtime_path(&location),
            };
            placed.push((runtime_path, edit));
        }
        Ok(placed)
    }

    fn owner_for_new(&self, runtime_path: &str) -> Option<(u32, u32)> {
        // cron reads a cron.d file only when root owns it; only root can chown.
        (self.is_our_cron_d_file(runtime_path) && crate::identity::is_root()).then_some((0, 0))
    }

    fn create_missing(&self, runtime_path: &str) -> Option<u32> {
        // cron.d files: not group- or other-writable (cron skips them otherwise).
        self.is_our_cron_d_file(runtime_path).then_some(0o644)
    }

    fn reload(
        &self,
        request: &ReloadRequest,
        record_load: RecordLoad,
    ) -> Result<Vec<String>, ReloadError> {
        let mut said = Vec::new();
        for module in &request.load_modules {
            // `module load` of a running module fails ("Unable to load module
            // X"), so ask first; and only a module this change loads is its to
            // unload on rollback.
            if self.module_status(module)? == ModuleStatus::Running {
                said.push(format!("module {module}: already loaded"));
                continue;
            }
            record_load(module).map_err(|message| ReloadError::Journal {
                module: module.clone(),
                message,
            })?;
            let command = format!("module load {module}");
            let out = self.run_cli(&command)?;
            // main/cli.c handle_load: "Loaded X", or "Unable to load module X".
            if out.lines().any(|l| l.trim() == format!("Loaded {module}")) {
                said.push(format!("{command}: {}", out.trim()));
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

    fn unload_module(&self, module: &str) -> Result<Option<String>, ReloadError> {
        // A module that declined to load is listed "Not Running"; Asterisk
        // unloads it on request too (main/loader.c), leaving no trace of the try.
        if self.module_status(module)? == ModuleStatus::Absent {
            return Ok(None);
        }
        let command = format!("module unload {module}");
        let out = self.run_cli(&command)?;
        // main/cli.c handle_unload: "Unloaded X", or "Unable to unload resource
        // X" (in use: Asterisk logs "Soft unload failed, 'X' has use count N").
        if out
            .lines()
            .any(|l| l.trim() == format!("Unloaded {module}"))
        {
            Ok(Some(format!("{command}: {}", out.trim())))
        } else {
            Err(ReloadError::Failed {
                command,
                output: out,
            })
        }
    }
}

/// Whether Asterisk has a module, from `module show like`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleStatus {
    /// Not in Asterisk's module list.
    Absent,
    /// Listed but "Not Running" (it declined to load).
    NotRunning,
    /// Loaded and running.
    Running,
}

impl AsteriskTarget {
    /// `module show like <module>`: whether `module` is loaded and running.
    pub(crate) fn module_status(&self, module: &str) -> Result<ModuleStatus, ReloadError> {
        let out = self.run_cli(&format!("module show like {module}"))?;
        Ok(parse_module_status(&out, module))
    }
}

/// Reads `module show like` (main/cli.c MODLIST_FORMAT: name, description cut
/// to 40 characters, use count, "Running" or "Not Running", support level) for
/// the line of exactly `module` (`like` matches substrings).
fn parse_module_status(out: &str, module: &str) -> ModuleStatus {
    let name = module.trim_end_matches(".so");
    let Some(line) = out.lines().find(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|first| first.trim_end_matches(".so") == name)
    }) else {
        return ModuleStatus::Absent;
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let n = words.len();
    if n >= 3 && words[n - 2] == "Running" && words[n - 3] != "Not" {
        ModuleStatus::Running
    } else {
        ModuleStatus::NotRunning
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::{Location, Written};

    fn target() -> (tempfile::TempDir, AsteriskTarget) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/asterisk")).unwrap();
        std::fs::write(dir.path().join("etc/asterisk/asterisk.conf"), "").unwrap();
        let t = AsteriskTarget::open(dir.path(), None, Some("asterisk")).unwrap();
        (dir, t)
    }

    fn cron_block(feature: &str, comment: char) -> (Location, RenderedEdit) {
        let location = Location {
            dir: PbxDir::SysEtc,
            rel: "crontab".into(),
        };
        let edit = RenderedEdit {
            feature: feature.into(),
            edit_id: format!("{feature}/cron"),
            content: RenderedContent::Block {
                body: Written::Full("* * * * * root /bin/true\n".into()),
                section: None,
                check: None,
                comment,
                added_newline: false,
            },
        };
        (location, edit)
    }

    /// A target whose CLI is [`crate::pbx::fake_cli`] in `dir`, with `loaded` running.
    fn with_fake_cli(dir: &Path, loaded: &[&str]) -> AsteriskTarget {
        std::fs::create_dir_all(dir.join("etc/asterisk")).unwrap();
        std::fs::write(dir.join("etc/asterisk/asterisk.conf"), "").unwrap();
        let cli = crate::pbx::fake_cli::write(dir);
        let mut modules = loaded.join("\n");
        modules.push('\n');
        std::fs::write(dir.join("modules"), modules.trim_start()).unwrap();
        AsteriskTarget::open(dir, None, Some(cli.to_str().unwrap())).unwrap()
    }

    fn loads(modules: &[&str]) -> ReloadRequest {
        ReloadRequest {
            load_modules: modules.iter().map(|m| m.to_string()).collect(),
            ..ReloadRequest::default()
        }
    }

    #[test]
    fn reload_records_each_module_it_loads_before_loading_it() {
        use crate::pbx::fake_cli;
        let dir = tempfile::tempdir().unwrap();
        let t = with_fake_cli(dir.path(), &["a.so"]);
        let mut recorded = Vec::new();
        let said = t
            .reload(&loads(&["a.so", "b.so", "c.so"]), &mut |m| {
                // Recorded while Asterisk has not been asked to load it yet.
                let log = fake_cli::log(dir.path());
                assert!(!log.contains(&format!("module load {m}")), "{log:?}");
                recorded.push(m.to_string());
                Ok(())
            })
            .unwrap();
        // a.so was running already: not this change's, not recorded, not loaded.
        assert_eq!(recorded, ["b.so", "c.so"]);
        assert_eq!(
            said,
            [
                "module a.so: already loaded",
                "module load b.so: Loaded b.so",
                "module load c.so: Loaded c.so"
            ]
        );
        assert!(!fake_cli::log(dir.path()).contains(&"module load a.so".to_string()));
        assert_eq!(fake_cli::modules(dir.path()), ["a.so", "b.so", "c.so"]);
    }

    #[test]
    fn a_load_that_fails_was_recorded_and_one_that_cannot_be_recorded_is_not_tried() {
        use crate::pbx::fake_cli;
        let dir = tempfile::tempdir().unwrap();
        let t = with_fake_cli(dir.path(), &[]);
        std::fs::write(dir.path().join("fail-c.so"), "").unwrap();
        let mut recorded = Vec::new();
        let err = t
            .reload(&loads(&["b.so", "c.so"]), &mut |m| {
                recorded.push(m.to_string());
                Ok(())
            })
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("`module load c.so` failed: Unable to load module c.so"),
            "{err}"
        );
        assert_eq!(recorded, ["b.so", "c.so"]);

        let dir = tempfile::tempdir().unwrap();
        let t = with_fake_cli(dir.path(), &[]);
        let err = t
            .reload(&loads(&["b.so"]), &mut |_| Err("disk full".into()))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("could not record b.so in the transaction's journal before loading it (disk full); it was not loaded"),
            "{err}"
        );
        assert!(!fake_cli::log(dir.path()).contains(&"module load b.so".to_string()));
        assert!(fake_cli::modules(dir.path()).is_empty());
    }

    #[test]
    fn unload_module_unloads_only_a_loaded_module() {
        use crate::pbx::fake_cli;
        let dir = tempfile::tempdir().unwrap();
        let t = with_fake_cli(dir.path(), &["a.so", "b.so"]);
        assert_eq!(
            t.unload_module("b.so").unwrap().as_deref(),
            Some("module unload b.so: Unloaded b.so")
        );
        assert_eq!(fake_cli::modules(dir.path()), ["a.so"]);
        // Not loaded (its load failed, or never ran): nothing to do, nothing asked.
        assert_eq!(t.unload_module("c.so").unwrap(), None);
        assert!(!fake_cli::log(dir.path()).contains(&"module unload c.so".to_string()));
    }

    #[test]
    fn module_status_reads_asterisks_module_list() {
        // Texts from Asterisk 22 (`module show like …`).
        let header = "Module                         Description                              Use Count  Status      Support Level\n";
        let running = format!(
            "{header}func_extstate.so               Gets an extension's state in the dialpla 0          Running              core\n1 modules loaded\n"
        );
        assert_eq!(
            parse_module_status(&running, "func_extstate.so"),
            ModuleStatus::Running
        );
        // `like` matches substrings: another module's line is not this one's.
        assert_eq!(
            parse_module_status(&running, "func_extstate_x.so"),
            ModuleStatus::Absent
        );
        assert_eq!(
            parse_module_status(&running, "extstate.so"),
            ModuleStatus::Absent
        );
        let none = format!("{header}0 modules loaded\n");
        assert_eq!(
            parse_module_status(&none, "func_extstate.so"),
            ModuleStatus::Absent
        );
        let declined = format!(
            "{header}app_confbridge.so              Conference Bridge Application            0          Not Running       extended\n1 modules loaded\n"
        );
        assert_eq!(
            parse_module_status(&declined, "app_confbridge.so"),
            ModuleStatus::NotRunning
        );
    }

    #[test]
    fn cron_blocks_go_to_a_cron_d_file_per_feature() {
        let (_d, t) = target();
        let placed = t.place(vec![cron_block("busy-callback", '#')]).unwrap();
        assert_eq!(placed[0].0, "/etc/cron.d/featpkg-busy-callback");
        // Same format as /etc/crontab: the user column stays.
        assert_eq!(placed[0].1, cron_block("busy-callback", '#').1);
        assert_eq!(
            t.create_missing("/etc/cron.d/featpkg-busy-callback"),
            Some(0o644)
        );
        for not_ours in [
            "/etc/crontab",
            "/etc/cron.d/admin-job",
            "/etc/cron.d/featpkg-",
            "/etc/cron.d/featpkg-x.dpkg-dist",
            "/etc/cron.d/sub/featpkg-x",
        ] {
            assert_eq!(t.create_missing(not_ours), None, "{not_ours}");
        }
        // A name Debian's cron would ignore is refused, not written.
        let err = t.place(vec![cron_block("a.b", '#')]).unwrap_err();
        assert!(err.message.contains("would be ignored by cron"), "{err}");
        let err = t.place(vec![cron_block("x", ';')]).unwrap_err();
        assert!(err.message.contains("'#' markers"), "{err}");
        assert!(valid_cron_d_name("featpkg-busy_callback-2"));
        assert!(!valid_cron_d_name("featpkg.cron") && !valid_cron_d_name(""));
    }
}
