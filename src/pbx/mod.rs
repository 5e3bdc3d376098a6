//! Targets: one PBX flavour each. A target knows where each contribution lands,
//! how to reload the PBX and how to check the reload worked. Everything
//! PBX-specific lives behind this seam.

/// A row of a PBX's configuration database that featpkg edits as a document
/// (MikoPBX's custom files and endpoint options; see its `row` module).
pub use mikopbx::row::{RowError, RowKey, RowRef, RowState};

pub mod asterisk;
pub mod freepbx;
pub mod mikopbx;
pub mod package;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::change::Doc;
use crate::feature::{Location, PbxDir, RenderedEdit};
use crate::file_access::FileAccess;

pub use asterisk::{AsteriskTarget, TargetError};
pub use freepbx::FreepbxTarget;
pub use mikopbx::MikopbxTarget;

/// The PBX flavours featpkg knows (`--target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetKind {
    /// Plain Asterisk: files in /etc/asterisk, cron lines in /etc/cron.d, `asterisk -rx` reloads.
    #[default]
    Asterisk,
    /// FreePBX 16/17: `*_custom.conf` files, the asterisk user's crontab, `fwconsole reload`.
    Freepbx,
    /// MikoPBX: custom-file rows and employee options in its config database.
    Mikopbx,
}

impl TargetKind {
    /// The name `--target` takes and feature definitions use (`unsupported`).
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Asterisk => "asterisk",
            TargetKind::Freepbx => "freepbx",
            TargetKind::Mikopbx => "mikopbx",
        }
    }
}

impl std::str::FromStr for TargetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<TargetKind, String> {
        match s {
            "asterisk" => Ok(TargetKind::Asterisk),
            "freepbx" => Ok(TargetKind::Freepbx),
            "mikopbx" => Ok(TargetKind::Mikopbx),
            other => Err(format!(
                "unknown target {other:?}: use asterisk, freepbx or mikopbx"
            )),
        }
    }
}

/// Everything the command line says about the PBX; each target reads what it needs.
#[derive(Debug, Clone, Default)]
pub struct TargetOptions {
    /// Prefix for every path (`/` on a real box; a temp dir in tests and demos).
    pub root: PathBuf,
    /// asterisk.conf as a runtime path (default /etc/asterisk/asterisk.conf).
    pub asterisk_conf: Option<String>,
    /// Asterisk CLI command (default `$FEATPKG_ASTERISK_CMD` or `asterisk`).
    pub asterisk_cmd: Option<String>,
    /// The PBX's own reload command (FreePBX: `fwconsole reload`; MikoPBX: the module's PHP reload script).
    pub reload_cmd: Option<String>,
    /// MikoPBX: the module's directory (runtime path).
    pub module_dir: Option<String>,
    /// MikoPBX: the configuration database (runtime path, default /cf/conf/mikopbx.db).
    pub config_db: Option<String>,
    /// FreePBX: the `crontab` program through which a non-root featpkg
    /// changes its own user's crontab (default /usr/bin/crontab, on `/` only).
    pub crontab_cmd: Option<String>,
}

/// Opens the target `kind` on the PBX `options` describe.
pub fn open(kind: TargetKind, options: &TargetOptions) -> Result<Box<dyn Target>, TargetError> {
    Ok(match kind {
        TargetKind::Asterisk => Box::new(AsteriskTarget::open(
            &options.root,
            options.asterisk_conf.as_deref(),
            options.asterisk_cmd.as_deref(),
        )?),
        TargetKind::Freepbx => Box::new(FreepbxTarget::open(options)?),
        TargetKind::Mikopbx => Box::new(MikopbxTarget::open(options)?),
    })
}

/// A feature's edit that this PBX cannot take, named with the reason.
#[derive(Debug, thiserror::Error)]
#[error("{edit}: {message}")]
pub struct PlaceError {
    /// The edit's id, `<feature>/<edit>`.
    pub edit: String,
    /// Why this PBX cannot take it: `a crontab block needs '#' markers`.
    pub message: String,
}

/// What a committed change needs from the PBX afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadRequest {
    /// Modules newly required (`module load`), e.g. `func_extstate.so`.
    pub load_modules: Vec<String>,
    /// The dialplan changed (`module reload pbx_config.so`).
    pub dialplan: bool,
    /// pjsip.conf (or an endpoint's options) changed (`module reload res_pjsip.so`).
    pub pjsip: bool,
    /// manager.conf changed (`manager reload`).
    pub manager: bool,
    /// A crontab featpkg edits changed (cron daemons that cache crontabs restart).
    pub crontab: bool,
    /// modules.conf gained a `load` line. Plain Asterisk loads `load_modules` live;
    /// a PBX that regenerates modules.conf (MikoPBX) restarts Asterisk for it.
    /// (A removed line is applied at Asterisk's next start: no restart for it.)
    pub modules_conf: bool,
    /// Contexts that must exist afterwards (`dialplan show <context>`).
    pub expect_contexts: Vec<String>,
    /// Every file and row the change wrote (runtime paths; host paths when
    /// crash recovery restored them), for a target that reloads by what
    /// changed beyond the kinds above (MikoPBX's hook text).
    pub changed: Vec<String>,
}

impl ReloadRequest {
    /// True when nothing needs reloading.
    pub fn is_empty(&self) -> bool {
        self.load_modules.is_empty()
            && !self.dialplan
            && !self.pjsip
            && !self.manager
            && !self.crontab
            && !self.modules_conf
            && self.expect_contexts.is_empty()
            && self.changed.is_empty()
    }
}

/// A failed reload or post-reload check; the message quotes what the PBX said.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The command could not be started at all (e.g. `asterisk` is not on
    /// the PATH).
    #[error("could not run {command:?}: {source}")]
    Spawn {
        /// The command line as shown to the user: `asterisk -rx "core reload"`.
        command: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The command ran but failed: a non-zero exit, Asterisk unreachable
    /// (`Unable to connect`), or output without the expected success line.
    #[error("`{command}` failed: {output}")]
    Failed {
        /// The command as shown to the user: `module reload res_pjsip.so`.
        command: String,
        /// What it printed (or why it counts as failed).
        output: String,
    },
    /// After the reload, a context the change must define is not in
    /// Asterisk's dialplan.
    #[error(
        "after reload, context [{context}] does not exist (`dialplan show {context}` said: {output})"
    )]
    MissingContext {
        /// The context's name without brackets: `from-internal`.
        context: String,
        /// What `dialplan show <context>` printed.
        output: String,
    },
    /// A module was about to be loaded, but the fact could not be written to
    /// the transaction's journal first, so it was not loaded (see [`RecordLoad`]).
    #[error(
        "could not record {module} in the transaction's journal before loading it ({message}); it was not loaded"
    )]
    Journal {
        /// The module: `func_extstate.so`.
        module: String,
        /// Why the journal could not record it.
        message: String,
    },
}

/// What [`Target::reload`] calls before the PBX loads a module for a change (a
/// module that was not running): it makes that fact durable in the
/// transaction's journal, so a rollback (or `recover` after a crash) unloads
/// exactly what the change loaded. An error stops the reload before the load.
pub type RecordLoad<'a> = &'a mut dyn FnMut(&str) -> Result<(), String>;

/// The [`RecordLoad`] for reloads that must never load a module (the reloads
/// that put the PBX back on restored files): any load is refused.
pub fn loads_nothing(module: &str) -> Result<(), String> {
    Err(format!("this reload may not load modules ({module})"))
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
    /// Reloads the PBX for `request` and checks the result. Before any module
    /// the PBX loads for it (live, or by a restart) that was not running,
    /// `record_load` is called with its name; a module already running is not.
    fn reload(
        &self,
        request: &ReloadRequest,
        record_load: RecordLoad,
    ) -> Result<Vec<String>, ReloadError>;

    /// Unloads `module` from the running PBX, when it is loaded: what a rollback
    /// does for each module its change loaded. `Ok(None)`: it was not loaded.
    fn unload_module(&self, module: &str) -> Result<Option<String>, ReloadError>;

    /// Places rendered edits, each given with its location, on this PBX: each
    /// as `(document, edit)`, the
    /// document named as the PBX names it (a file path such as
    /// `/etc/asterisk/extensions.conf`, or a database row, see [`RowRef`]) and
    /// the edit rewritten the way the PBX wants it. The default puts each at its
    /// location's path unchanged.
    fn place(
        &self,
        edits: Vec<(Location, RenderedEdit)>,
    ) -> Result<Vec<(String, RenderedEdit)>, PlaceError> {
        Ok(edits
            .into_iter()
            .map(|(location, edit)| (self.runtime_path(&location), edit))
            .collect())
    }

    /// Where the document at `runtime_path` is stored (a file or a row, never
    /// a directory). Default: a file under the root.
    fn document(&self, runtime_path: &str) -> Doc {
        Doc::File {
            path: self.host_path(runtime_path),
            access: FileAccess::Direct,
        }
    }

    /// The document history names by `runtime_path`: a directory under the
    /// root, or [`Target::document`].
    fn recorded_doc(&self, runtime_path: &str, is_dir: bool) -> Doc {
        if is_dir {
            Doc::Dir {
                path: self.host_path(runtime_path),
            }
        } else {
            self.document(runtime_path)
        }
    }

    /// Owner (uid, gid) for a file or directory featpkg creates at `runtime_path`;
    /// `None` = the user featpkg runs as. Existing files keep their owner.
    fn owner_for_new(&self, _runtime_path: &str) -> Option<(u32, u32)> {
        None
    }

    /// Mode for a shared file featpkg may create when a block goes into it and
    /// it does not exist yet (a user's crontab); its owner comes from
    /// [`Target::owner_for_new`]. Once none of featpkg's blocks is left in such a
    /// file and nothing else is, it is removed again. `None` (the default): the
    /// file must exist.
    fn create_missing(&self, _runtime_path: &str) -> Option<u32> {
        None
    }

    /// Why an intact block at `runtime_path` (its body `body`) is not in use by
    /// the PBX, if it is not: what `verify` reports beyond the bytes on disk.
    fn not_applied(&self, _runtime_path: &str, _body: &[u8]) -> Option<String> {
        None
    }

    /// Owner (uid, gid) featpkg's state directory is handed to after a run as
    /// root, when the PBX also runs featpkg as another user (FreePBX's web UI
    /// runs it as asterisk). `None` (the default): it stays whose it is.
    fn state_owner(&self) -> Option<(u32, u32)> {
        None
    }

    /// Why reloading for `request` would restart Asterisk and so end every live
    /// call, if it would. Such a change needs the admin's explicit consent.
    fn restart_reason(&self, _request: &ReloadRequest) -> Option<String> {
        None
    }

    /// Where else than with `--allow-restart` the admin gives that consent on
    /// this PBX (its module page), as a parenthesised hint; empty when nowhere.
    fn restart_consent_hint(&self) -> &'static str {
        ""
    }

    /// Plans `edits` in a document this PBX keeps as a row of its
    /// configuration database (see [`Target::document`]): the planner's block
    /// rules applied to the row's text. `baseline`: the row as it was before
    /// featpkg first changed it, when featpkg has blocks in it. Only a PBX
    /// whose documents include rows has to answer.
    fn plan_row(
        &self,
        edits: crate::plan::DocEdits,
        _row: RowRef,
        _baseline: Option<&Option<RowState>>,
        _out: &mut crate::plan::Plan,
    ) -> Result<(), crate::plan::PlanError> {
        Err(crate::plan::PlanError::Config {
            path: edits.path.into(),
            message: "this PBX keeps no configuration in database rows".into(),
        })
    }
}

/// The PBX's config directory as the planner's checks read it: includes are
/// followed only inside it, and `overlay` (a file name and text) stands in for
/// the file on disk, e.g. the file being planned without this bundle's blocks.
pub(crate) struct ConfigDir<'a> {
    pub target: &'a dyn Target,
    /// The config directory (runtime path).
    pub dir: &'a str,
    pub overlay: Option<(&'a str, Vec<u8>)>,
}

impl ConfigDir<'_> {
    /// Includes are relative to the config directory; an absolute one must stay inside it.
    fn host_path(&self, rel: &str) -> std::io::Result<PathBuf> {
        let runtime = if rel.starts_with('/') {
            if rel != self.dir && !rel.starts_with(&format!("{}/", self.dir)) {
                return Err(std::io::Error::other(format!(
                    "outside {}; featpkg's checks only follow includes inside the config directory",
                    self.dir
                )));
            }
            rel.to_string()
        } else if rel.is_empty() {
            self.dir.to_string()
        } else {
            format!("{}/{rel}", self.dir)
        };
        let host = self.target.host_path(&runtime);
        // A link may lead out of the config directory — under --root, an absolute
        // one even to the host's own /etc: where it really leads must stay inside.
        if let (Ok(real), Ok(dir)) = (
            host.canonicalize(),
            self.target.host_path(self.dir).canonicalize(),
        ) && !real.starts_with(&dir)
        {
            return Err(std::io::Error::other(format!(
                "it is a link to {}, outside {}; featpkg's checks only follow includes inside the config directory",
                real.display(),
                self.dir
            )));
        }
        Ok(host)
    }
}

impl crate::asterisk_config::ConfigSource for ConfigDir<'_> {
    fn read(&mut self, rel: &str) -> std::io::Result<Option<Vec<u8>>> {
        if let Some((name, text)) = &self.overlay
            && rel == *name
        {
            return Ok(Some(text.clone()));
        }
        crate::asterisk_config::read_if_exists(&self.host_path(rel)?)
    }

    fn list(&mut self, rel: &str) -> std::io::Result<Vec<String>> {
        crate::asterisk_config::file_names(&self.host_path(rel)?)
    }
}

/// The PBX's reload command: `--reload-cmd` split on whitespace, else `default`.
/// An empty one is refused.
pub(crate) fn reload_command(
    options: &TargetOptions,
    default: impl FnOnce() -> Vec<String>,
) -> Result<Vec<String>, TargetError> {
    let command: Vec<String> = match &options.reload_cmd {
        Some(cmd) => cmd.split_whitespace().map(str::to_string).collect(),
        None => default(),
    };
    if command.is_empty() {
        return Err(TargetError::Invalid {
            path: options.root.clone(),
            message: "--reload-cmd is empty".into(),
        });
    }
    Ok(command)
}

/// Runs one of the PBX's commands (`argv`, then `args`) and returns what it
/// printed (stdout then stderr, trimmed). A command that cannot start, or exits
/// non-zero, is a [`ReloadError`] quoting `shown` and its output.
pub(crate) fn run_command(
    argv: &[String],
    args: &[&str],
    shown: &str,
) -> Result<String, ReloadError> {
    let output = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .args(args)
        .output()
        .map_err(|source| ReloadError::Spawn {
            command: shown.to_string(),
            source,
        })?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    let text = text.trim().to_string();
    if !output.status.success() {
        return Err(ReloadError::Failed {
            command: shown.to_string(),
            output: if text.is_empty() {
                output.status.to_string()
            } else {
                format!("{text} ({})", output.status)
            },
        });
    }
    Ok(text)
}

/// A directory path a PBX setting gives, checked: absolute and without `..`
/// (featpkg joins it under `--root`, so `..` could leave the root), with any
/// trailing `/` removed. `None` when it is not such a path.
pub(crate) fn absolute_dir(value: &str) -> Option<String> {
    (value.starts_with('/') && !value.split('/').any(|p| p == ".."))
        .then(|| value.trim_end_matches('/').to_string())
}

/// Lines of a system crontab (`/etc/crontab`: five time fields, a user, the
/// command) rewritten for a user's own crontab, which has no user column.
/// Comments, blank lines and `NAME=value` lines pass unchanged.
pub fn without_cron_user_column(body: &str) -> Result<String, String> {
    let mut out = String::with_capacity(body.len());
    for line in body.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let is_job = !(trimmed.is_empty()
            || trimmed.starts_with('#')
            || trimmed
                .split_whitespace()
                .next()
                .is_some_and(|w| w.contains('=')));
        if !is_job {
            out.push_str(line);
            continue;
        }
        // Five time fields (or one @word), then the user, then the command.
        let time_fields = if trimmed.starts_with('@') { 1 } else { 5 };
        let mut rest = trimmed;
        let mut kept = String::new();
        for _ in 0..time_fields {
            let end = rest
                .find([' ', '\t'])
                .ok_or_else(|| format!("cron line {line:?} is incomplete"))?;
            kept.push_str(&rest[..end]);
            kept.push(' ');
            rest = rest[end..].trim_start();
        }
        let end = rest
            .find([' ', '\t'])
            .ok_or_else(|| format!("cron line {line:?} has no command after the user"))?;
        kept.push_str(rest[end..].trim_start());
        out.push_str(&kept);
    }
    Ok(out)
}

/// A tiny Asterisk CLI for the targets' unit tests (a shell script in a temp
/// dir): `module show like`, `module load`, `module unload` with Asterisk 22's
/// texts over the modules listed in `<dir>/modules`; a module with a file
/// `<dir>/fail-<module>` fails to load; every command is appended to `<dir>/log`.
#[cfg(test)]
pub(crate) mod fake_cli {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    const SCRIPT: &str = r#"#!/usr/bin/env bash
d="$(dirname "$0")"
cmd=""
while [ $# -gt 0 ]; do case "$1" in -rx) cmd="$2"; shift 2 ;; *) shift ;; esac; done
echo "$cmd" >> "$d/log"
touch "$d/modules"
read -r -a w <<< "$cmd"
m="${w[2]:-}"
case "${w[0]:-} ${w[1]:-}" in
"module show")
    printf '%-30s %-40.40s %-10s %-11s %13s
' Module Description "Use Count" Status "Support Level"
    n=0
    while read -r x; do
        if [[ "$x" == *"${w[3]:-}"* ]]; then
            printf '%-30s %-40.40s %-10d %-11s %13s
' "$x" "a module" 0 Running core
            n=$((n + 1))
        fi
    done < "$d/modules"
    echo "$n modules loaded" ;;
"module load")
    if grep -qx "$m" "$d/modules" || [ -e "$d/fail-$m" ]; then
        echo "Unable to load module $m"; echo "Command 'module load $m' failed."
    else
        echo "$m" >> "$d/modules"; echo "Loaded $m"
    fi ;;
"module unload")
    if grep -qx "$m" "$d/modules"; then
        grep -vx "$m" "$d/modules" > "$d/modules.tmp"; mv "$d/modules.tmp" "$d/modules"
        echo "Unloaded $m"
    else
        echo "Unable to unload resource $m"; echo "Command 'module unload $m' failed."
    fi ;;
"core waitfullybooted") echo "Asterisk has fully booted." ;;
*) echo "No such command '$cmd'" ;;
esac
"#;

    /// Writes the script into `dir` (which also holds its state) and returns its path.
    pub fn write(dir: &Path) -> PathBuf {
        let path = dir.join("fake-cli");
        std::fs::write(&path, SCRIPT).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// The commands run so far.
    pub fn log(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The modules loaded now.
    pub fn modules(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("modules"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_nothing_refuses_every_load() {
        assert!(loads_nothing("func_extstate.so").is_err());
    }

    #[test]
    fn cron_user_column_is_dropped_from_jobs_only() {
        let body =
            "# keep\nPATH=/bin\n* * * * * root /x --a b >/dev/null 2>&1\n@reboot asterisk /y\n";
        assert_eq!(
            without_cron_user_column(body).unwrap(),
            "# keep\nPATH=/bin\n* * * * * /x --a b >/dev/null 2>&1\n@reboot /y\n"
        );
        assert!(without_cron_user_column("* * * * root\n").is_err());
    }
}
