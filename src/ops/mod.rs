//! Operations: one function per command over the library (cargo's `ops/` model).
//! The CLI parses arguments, calls one of these and prints what it returns.

pub mod build;
pub mod destinations;
pub mod inspect;
pub mod install;
pub mod rollback;
pub mod schema;
pub mod uninstall;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::change::{Doc, DocChange};
use crate::hash::sha256_hex;
use crate::pbx::{ReloadRequest, Target, TargetKind, TargetOptions};
use crate::plan::Plan;
use crate::state::{BundleSnapshot, NewTxn, State};
use crate::txn::{self, PbxEvent, Transaction};

/// Every error a command can end with; each message is for the admin.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The PBX could not be opened: its `asterisk.conf`, directories or options.
    #[error(transparent)]
    Target(#[from] crate::pbx::asterisk::TargetError),
    /// A bundle could not be built, or opened as a valid bundle.
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    /// A feature definition, a feature name or a parameter value was refused.
    #[error(transparent)]
    Feature(#[from] crate::feature::FeatureError),
    /// The edits could not be planned against the PBX's present files; nothing was written.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// featpkg's state database could not be opened, read or written.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The transaction failed: its journal, the lock, a document changed
    /// meanwhile, a write or an undo.
    #[error(transparent)]
    Txn(#[from] crate::txn::TxnError),
    /// The PBX refused the reload (or a check after it); every change was
    /// rolled back, and the note lists the modules unloaded again.
    #[error("reload failed, every change was rolled back{1}: {0}")]
    ReloadFailed(crate::pbx::ReloadError, UnloadNote),
    /// featpkg declines the request itself (a restart without
    /// `--allow-restart`, an ambiguous name, nothing to roll back…); the
    /// message says why and what to do.
    #[error("{0}")]
    Refused(String),
    /// A feature's edit this PBX cannot take.
    #[error(transparent)]
    Place(#[from] crate::pbx::PlaceError),
    /// A row of the PBX's configuration database could not be read or written.
    #[error(transparent)]
    Row(#[from] crate::pbx::RowError),
}

/// An error as a page shows it: the message as is, and where it belongs
/// (`featpkg … --json` prints `{"error": …}` with exit 2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ErrorReport {
    /// The feature the error is about, when it is about one.
    pub feature: Option<String>,
    /// Its parameter, when the error is about one.
    pub param: Option<String>,
    /// JSON path of the value in the parameters (`$.queue-failover.rules[1].status`).
    pub path: Option<String>,
    /// The whole message, as the CLI prints it.
    pub message: String,
}

impl Error {
    /// Where the error belongs, for a form that wants to show it beside the value.
    pub fn report(&self) -> ErrorReport {
        use crate::feature::FeatureError as F;
        let at = |feature: &str, param: Option<&str>, path: String| ErrorReport {
            feature: Some(feature.to_string()),
            param: param.map(str::to_string),
            path: Some(path),
            message: self.to_string(),
        };
        match self {
            Error::Feature(F::UnknownFeature(feature, _)) => {
                at(feature, None, format!("$.{feature}"))
            }
            Error::Feature(F::Definition { feature, .. }) => {
                at(feature, None, format!("$.{feature}"))
            }
            Error::Feature(
                F::UnknownParam { feature, param, .. }
                | F::BadValue { feature, param, .. }
                | F::Required { feature, param },
            ) => at(feature, Some(param), format!("$.{feature}.{param}")),
            Error::Feature(F::BadStructured {
                feature,
                param,
                rule,
            }) => {
                // The rule starts with the place inside the value: "[1].status: …".
                let inner = match rule.split_once(": ") {
                    Some((place, _)) if place.starts_with(['[', '.']) => place,
                    _ => "",
                };
                at(feature, Some(param), format!("$.{feature}.{param}{inner}"))
            }
            Error::Feature(F::ParamsFile { path, .. }) => {
                let mut parts = path.strip_prefix("$.").unwrap_or("").splitn(2, '.');
                let feature = parts.next().filter(|f| !f.is_empty()).map(str::to_string);
                let param = parts
                    .next()
                    .map(|p| p.split(['[', '.']).next().unwrap_or(p).to_string());
                ErrorReport {
                    feature,
                    param,
                    path: Some(path.clone()),
                    message: self.to_string(),
                }
            }
            _ => ErrorReport {
                feature: None,
                param: None,
                path: None,
                message: self.to_string(),
            },
        }
    }
}

/// The modules a rolled-back change had loaded and the rollback unloaded
/// again, shown in the error (empty: nothing to say).
#[derive(Debug, Clone, Default)]
pub struct UnloadNote(pub Vec<String>);

impl std::fmt::Display for UnloadNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(
                f,
                " (and the modules it had loaded unloaded again: {})",
                self.0.join(", ")
            )
        }
    }
}

/// Options every PBX command takes.
#[derive(Debug, Clone)]
pub struct PbxOptions {
    /// Which PBX flavour.
    pub target: TargetKind,
    /// Where the PBX is and how to reach it (root, asterisk.conf, commands, …).
    pub pbx: TargetOptions,
    /// The admin agreed to changes that restart Asterisk (ending live calls).
    pub allow_restart: bool,
    /// How long to wait for another featpkg run to finish.
    pub lock_wait: Duration,
    /// The command only reads (status, verify, a dry run): on a PBX featpkg never
    /// touched, nothing is created, not even the state directory.
    pub read_only: bool,
    /// Say each step of a change as it starts, on stderr (`--progress`).
    pub progress: bool,
}

/// An open PBX: target, state, the lock, and what crash recovery did on opening.
pub struct Session {
    /// The PBX: where its files are, how to reload it.
    pub target: Box<dyn Target>,
    /// featpkg's record of what is installed there and its transaction history
    /// (in memory and empty for a read-only command on a PBX featpkg never touched).
    pub state: State,
    /// Set when an unfinished transaction was found and rolled back (or forward).
    pub recovered: Option<txn::RecoveryReport>,
    /// Changes that restart Asterisk may go ahead (`--allow-restart`).
    pub allow_restart: bool,
    /// Each step of a change is said as it starts (`--progress`).
    progress: bool,
    _lock: Option<txn::PbxLock>,
}

impl Session {
    /// Opens the PBX, takes the lock and finishes any interrupted transaction first.
    pub fn open(options: &PbxOptions) -> Result<Session, Error> {
        if options.progress {
            say_progress(ProgressStep::Plan);
        }
        let target = crate::pbx::open(options.target, &options.pbx)?;
        let state_dir = target.state_dir();
        if options.read_only && !state_dir.exists() {
            return Ok(Session {
                target,
                state: State::empty_in_memory()?,
                recovered: None,
                allow_restart: options.allow_restart,
                progress: options.progress,
                _lock: None,
            });
        }
        std::fs::create_dir_all(&state_dir).map_err(|source| crate::state::StateError::Dir {
            path: state_dir.display().to_string(),
            source,
        })?;
        let lock = txn::acquire_lock(&state_dir, options.lock_wait)?;
        let state = State::open(&state_dir)?;
        let recovered = txn::recover(
            &journal_dir(target.as_ref()),
            &|key| state.is_committed(key).unwrap_or(false),
            &mut |undone| {
                // Asterisk may have loaded the files before the crash: load the
                // restored ones. When the journal says a reload had started,
                // every file it lists (an earlier undo may have put them back
                // already, before its reload).
                let changed: Vec<String> = if undone.reloaded {
                    &undone.documents
                } else {
                    &undone.restored
                }
                .iter()
                .map(|p| config_file(&target.document(&p.display().to_string()), p))
                .collect();
                let changed: Vec<&str> = changed.iter().map(String::as_str).collect();
                let request = reload_for_changed(&changed);
                // An empty request runs no command.
                let mut said = Vec::new();
                match target.reload(&request, &mut crate::pbx::loads_nothing) {
                    Ok(lines) => said.extend(lines),
                    Err(e) => tracing::warn!(
                        "after recovery, reloading Asterisk failed: {e}; reload it by hand"
                    ),
                }
                said.extend(
                    unload_modules(target.as_ref(), &undone.loaded_modules)
                        .into_iter()
                        .map(|(_, line)| line),
                );
                said
            },
        )?;
        Ok(Session {
            target,
            state,
            recovered,
            allow_restart: options.allow_restart,
            progress: options.progress,
            _lock: Some(lock),
        })
    }
}

impl Drop for Session {
    /// After a run as root, the state directory (database, lock, key, journal)
    /// goes to the user the PBX also runs featpkg as, so that user's next run
    /// can open it (a PBX whose web UI runs featpkg as its own user).
    fn drop(&mut self) {
        let Some((uid, gid)) = self.target.state_owner() else {
            return;
        };
        if !crate::identity::is_root() {
            return;
        }
        let dir = self.target.state_dir();
        if dir.is_dir()
            && let Err(e) = chown_tree(&dir, uid, gid)
        {
            tracing::warn!(
                "could not give {} to uid {uid}: {e}; the PBX's web UI may not be able to run featpkg until it is",
                dir.display()
            );
        }
    }
}

/// Gives `path` and everything under it to `uid:gid`, links themselves, not what they point to.
fn chown_tree(path: &std::path::Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// The secret a feature uses on this PBX (e.g. its AMI user's password): derived
/// from a random key kept in featpkg's state dir (mode 0600), so it is stable
/// across reinstalls and upgrades and different on every PBX. On a PBX featpkg
/// never touched, read-only commands get a mask instead (and create nothing).
pub(crate) fn feature_secret(
    target: &dyn Target,
    bundle: &str,
    feature: &str,
) -> Result<String, Error> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let dir = target.state_dir();
    if !dir.exists() {
        return Ok(SECRET_MASK.to_string());
    }
    let path = dir.join("machine.key");
    let io = |e: std::io::Error| Error::Refused(format!("{}: {e}", path.display()));
    if !path.exists() {
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .map_err(io)?;
        let tmp = dir.join(".machine.key.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&key).and_then(|_| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
    }
    let mut material = std::fs::read(&path).map_err(io)?;
    material.extend_from_slice(format!("\0{bundle}\0{feature}").as_bytes());
    Ok(sha256_hex(&material)[..32].to_string())
}

/// Shown instead of secrets in diffs and on untouched PBXs.
pub const SECRET_MASK: &str = "********";

fn journal_dir(target: &dyn Target) -> PathBuf {
    target.state_dir().join("journal")
}

/// The steps of a change a page shows while it waits (a PBX restart can
/// take a minute): `featpkg: progress <step>` on stderr as each one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressStep {
    /// Reading the bundle and the PBX, checking parameters, planning the edits.
    Plan,
    /// Writing files and rows (journalled).
    Write,
    /// Reloading the PBX and checking what it loaded.
    Reload,
    /// Recording the result (and, after a reload, that it held).
    Verify,
}

impl ProgressStep {
    /// The word printed after `featpkg: progress`: `plan`, `write`, `reload` or `verify`.
    pub fn name(self) -> &'static str {
        match self {
            ProgressStep::Plan => "plan",
            ProgressStep::Write => "write",
            ProgressStep::Reload => "reload",
            ProgressStep::Verify => "verify",
        }
    }
}

/// Says that `step` starts: `featpkg: progress <step>` on stderr.
fn say_progress(step: ProgressStep) {
    eprintln!("featpkg: progress {}", step.name());
}

impl Session {
    /// Says that `step` starts, when `--progress` asked for it.
    pub fn progress(&self, step: ProgressStep) {
        if self.progress {
            say_progress(step);
        }
    }
}

/// What an applied change did, for the user.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The transaction's number in the state's history: what the CLI prints
    /// (`done: transaction 7`) and a later rollback names.
    pub txn_id: i64,
    /// One line on what was done: `upgrade demo 1.0.0 -> 1.1.0 (greeting)`.
    pub summary: String,
    /// Each file, directory or row changed.
    pub changes: Vec<ChangedPath>,
    /// What the PBX said during reload, or why it was skipped.
    pub reload: Vec<String>,
    /// Hand edits overridden with --force.
    pub forced: Vec<String>,
}

/// One change to apply as a transaction.
pub(crate) struct Change<'a> {
    /// What history calls it: `install`, `upgrade`, `uninstall` or `rollback`.
    pub kind: &'a str,
    /// The bundle's name.
    pub bundle: &'a str,
    /// One line for the admin: `install demo 1.0.0 (greeting)`.
    pub summary: String,
    /// The document changes to apply.
    pub plan: Plan,
    /// The bundle as State records it now; `None`: not installed.
    pub before: Option<BundleSnapshot>,
    /// The bundle as State will record it; `None`: removed.
    pub after: Option<BundleSnapshot>,
    /// What the PBX must reload (and load, and check) once the files are written.
    pub reload: ReloadRequest,
    /// For a rollback: the history number of the transaction it undoes.
    pub undoes: Option<i64>,
}

fn new_txn_key() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}-{:09}-{}",
        now.as_secs(),
        now.subsec_nanos(),
        std::process::id()
    )
}

/// One path a change created, modified or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedPath {
    /// "created", "modified" or "removed".
    pub verb: &'static str,
    /// The path as the PBX sees it (a row: `<table>:<key>`).
    pub path: String,
    /// True for a directory (shown with a trailing `/`).
    pub is_dir: bool,
}

impl std::fmt::Display for ChangedPath {
    /// "created  /etc/…/" for a directory, "modified /etc/asterisk/extensions.conf".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_dir {
            write!(f, "{:<8} {}/", self.verb, self.path)
        } else {
            write!(f, "{:<8} {}", self.verb, self.path)
        }
    }
}

/// The paths a plan changes, in step order.
pub fn describe(plan: &Plan) -> Vec<ChangedPath> {
    let verb = |before: bool, after: bool| match (before, after) {
        (false, true) => "created",
        (true, false) => "removed",
        _ => "modified",
    };
    plan.changes
        .iter()
        .map(|c| ChangedPath {
            verb: verb(c.before.is_some(), c.after.is_some()),
            path: c.runtime_path.clone(),
            is_dir: c.is_dir(),
        })
        .collect()
}

/// Applies a change: journal, atomic edits, reload + verify, state commit.
/// Any failure before the state commit rolls every file back to its exact bytes.
pub(crate) fn execute(
    session: &mut Session,
    mut change: Change,
    no_reload: bool,
) -> Result<Applied, Error> {
    if !no_reload
        && !session.allow_restart
        && let Some(reason) = session.target.restart_reason(&change.reload)
    {
        return Err(restart_refusal(session.target.as_ref(), &reason));
    }
    let key = new_txn_key();
    let journal = journal_dir(session.target.as_ref());
    session.progress(ProgressStep::Write);
    // The transaction owns the changes from here (a big file's bytes are held once).
    let described = describe(&change.plan);
    let changes = std::mem::take(&mut change.plan.changes);
    let mut transaction = Transaction::begin(&journal, &key, changes)?;
    transaction.apply()?;
    let target = session.target.as_ref();
    let transaction = Uncommitted::new(transaction, target, &change.reload);

    let mut reload_said = Vec::new();
    if no_reload {
        reload_said.push(
            "reload skipped (--no-reload): reload Asterisk yourself to activate the changes".into(),
        );
    } else if !change.reload.is_empty() {
        // Journalled first: from here on, a rollback reloads the restored files
        // and unloads each module recorded before it was loaded.
        session.progress(ProgressStep::Reload);
        if let Err(e) = transaction.transaction().record(&PbxEvent::Reload) {
            transaction.roll_back()?;
            return Err(e.into());
        }
        let reloaded = target.reload(&change.reload, &mut |module| {
            transaction
                .transaction()
                .record(&PbxEvent::LoadModule(module.to_string()))
                .map_err(|e| e.to_string())
        });
        match reloaded {
            Ok(said) => reload_said = said,
            Err(e) => {
                let unloaded = transaction.roll_back()?;
                return Err(Error::ReloadFailed(e, UnloadNote(unloaded)));
            }
        }
    }
    session.progress(ProgressStep::Verify);
    if let Err(e) = txn::test_point("before-state-commit") {
        transaction.roll_back()?;
        return Err(e.into());
    }
    let committed = session.state.commit(&NewTxn {
        txn_key: &key,
        kind: change.kind,
        bundle: change.bundle,
        summary: &change.summary,
        bundle_before: change.before.as_ref(),
        bundle_after: change.after.as_ref(),
        changes: transaction.transaction().changes(),
        undoes: change.undoes,
    });
    let txn_id = match committed {
        Ok(id) => id,
        Err(e) => {
            transaction.roll_back()?;
            return Err(e.into());
        }
    };
    // A crash from here on is rolled forward by recovery: the state says committed.
    let transaction = transaction.committed();
    txn::test_point("state-committed")?;
    transaction.finish()?;
    Ok(Applied {
        txn_id,
        summary: change.summary,
        changes: described,
        reload: reload_said,
        forced: change.plan.forced,
    })
}

/// A transaction whose files are written but not yet committed to State: it
/// rolls back (files, then the running PBX) unless [`Uncommitted::committed`]
/// is called, on an error path and on an early return or panic alike.
struct Uncommitted<'a> {
    transaction: Option<Transaction>,
    target: &'a dyn Target,
    forward: &'a ReloadRequest,
}

impl<'a> Uncommitted<'a> {
    fn new(transaction: Transaction, target: &'a dyn Target, forward: &'a ReloadRequest) -> Self {
        Uncommitted {
            transaction: Some(transaction),
            target,
            forward,
        }
    }

    fn transaction(&self) -> &Transaction {
        self.transaction
            .as_ref()
            .expect("taken only by consuming self")
    }

    /// Rolls back now; returns the modules it unloaded.
    fn roll_back(mut self) -> Result<Vec<String>, Error> {
        let transaction = self
            .transaction
            .take()
            .expect("taken only by consuming self");
        roll_back(self.target, transaction, self.forward)
    }

    /// State says committed: from here on recovery rolls forward, never back.
    fn committed(mut self) -> Transaction {
        self.transaction
            .take()
            .expect("taken only by consuming self")
    }
}

impl Drop for Uncommitted<'_> {
    fn drop(&mut self) {
        if let Some(transaction) = self.transaction.take()
            && let Err(e) = roll_back(self.target, transaction, self.forward)
        {
            tracing::error!(
                "rolling back the interrupted change failed: {e}; run `featpkg recover`"
            );
        }
    }
}

/// Rolls an applied change back: the files (and rows) first; then, if the
/// journal says the PBX was reloaded, the PBX is put back on the restored
/// files ([`reload_restored`]) and every module the change loaded is unloaded
/// again, last loaded first ([`unload_modules`]); then the journal goes.
/// Returns the modules unloaded.
fn roll_back(
    target: &dyn Target,
    transaction: Transaction,
    forward: &ReloadRequest,
) -> Result<Vec<String>, Error> {
    let mut unloaded = Vec::new();
    transaction.rollback(&mut |undone| {
        if undone.reloaded {
            reload_restored(target, forward);
        }
        unloaded = unload_modules(target, &undone.loaded_modules)
            .into_iter()
            .map(|(module, _)| module)
            .collect();
    })?;
    Ok(unloaded)
}

/// After a rollback that followed a reload, puts the PBX back on the restored
/// files: the same reloads as forward (a PBX that regenerates files from its
/// database rewrites them from the restored rows), without loading
/// modules, checking contexts or restarting (the modules the change loaded are
/// unloaded live afterwards). A failure here is only logged: the files are
/// already right, and the error the admin sees is the one that caused the rollback.
fn reload_restored(target: &dyn Target, forward: &ReloadRequest) {
    let again = ReloadRequest {
        dialplan: forward.dialplan,
        pjsip: forward.pjsip,
        manager: forward.manager,
        crontab: forward.crontab,
        changed: forward.changed.clone(),
        ..ReloadRequest::default()
    };
    if let Err(e) = target.reload(&again, &mut crate::pbx::loads_nothing) {
        tracing::warn!("reload after rollback failed as well: {e}; reload the PBX by hand");
    }
}

/// Unloads, last loaded first, the modules a rolled-back change had loaded
/// (as its journal recorded them), once the PBX runs the restored files again:
/// a failed or undone change leaves nothing of itself in the running PBX. A
/// module Asterisk does not list (no such file, or the run was killed before
/// its load) is skipped; one listed "Not Running" (its load declined) is
/// unloaded like a running one. A failure (a module in use) is logged, not fatal: the files
/// are right, and the module goes at the next restart anyway. Returns each
/// module unloaded with what Asterisk said.
///
/// A committed change is different, and unloads nothing: an uninstall (or
/// `featpkg rollback` of a committed install) removes its `load =>` lines and
/// leaves the modules running until Asterisk's next start, which follows the
/// restored modules.conf. By then the admin's own dialplan may use the module
/// (Asterisk refuses to unload a module in use, and `module unload -f` could
/// crash it), and with `autoload = yes` Asterisk would have loaded it anyway.
/// A failed change, undone within its own run (or by the next command after
/// a crash), was never in service: only it can have used what it loaded.
fn unload_modules(target: &dyn Target, modules: &[String]) -> Vec<(String, String)> {
    let mut said = Vec::new();
    for module in modules.iter().rev() {
        match target.unload_module(module) {
            Ok(Some(line)) => said.push((module.clone(), line)),
            Ok(None) => {}
            Err(e) => tracing::warn!(
                "rolling back, could not unload {module}, which the change had loaded: {e}; unload it by hand (`module unload {module}`) or it stays loaded until Asterisk restarts"
            ),
        }
    }
    said
}

/// True when the plan adds a `load` line to modules.conf. Only that needs the
/// file applied now; a removed line leaves the module loaded, harmlessly, until
/// Asterisk next starts, so an uninstall never has to restart it.
fn modules_conf_loads_more(plan: &Plan) -> bool {
    let loads = |text: &[u8]| -> BTreeSet<String> {
        String::from_utf8_lossy(text)
            .lines()
            .map(|l| l.split(';').next().unwrap_or("").trim().to_string())
            .filter(|l| {
                l.strip_prefix("load")
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            })
            .map(|l| l.split_whitespace().collect::<String>())
            .collect()
    };
    let is_modules_conf = |path: &str| path.rsplit('/').next() == Some("modules.conf");
    let text =
        |s: &Option<crate::change::DocState>| s.as_ref().map(|s| s.text()).unwrap_or_default();
    plan.changes
        .iter()
        .filter(|c| !c.is_dir() && is_modules_conf(&c.runtime_path))
        .any(|c| !loads(&text(&c.after)).is_subset(&loads(&text(&c.before))))
}

/// What a dry run shows: the change, the diff of every path it would touch,
/// and what the admin must know before applying it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Preview {
    /// One line on what the change would do: `install demo 1.0.0 (greeting)`.
    pub summary: String,
    /// The diff of each document the change would touch, in plan order.
    pub changes: Vec<crate::diff::DiffPart>,
    /// "applying … restarts Asterisk, which ends every live call".
    pub warnings: Vec<String>,
}

impl Preview {
    /// The unified diff of every change, as one text.
    pub fn diff(&self) -> String {
        self.changes.iter().map(|c| c.diff.as_str()).collect()
    }
}

/// The preview of `plan`: refused when the change would restart Asterisk and
/// the admin did not allow it (as applying it would be), else warned.
/// So a PBX's "before enable" check can stop the admin before anything happens.
pub(crate) fn preview(session: &Session, plan: &Plan, summary: String) -> Result<Preview, Error> {
    let request = reload_for(plan, Vec::new(), Vec::new());
    let warnings = match session.target.restart_reason(&request) {
        Some(reason) if !session.allow_restart => {
            return Err(restart_refusal(session.target.as_ref(), &reason));
        }
        Some(reason) => vec![format!("{reason}, which ends every live call")],
        None => Vec::new(),
    };
    Ok(Preview {
        summary,
        changes: crate::diff::render_parts(plan),
        warnings,
    })
}

fn restart_refusal(target: &dyn Target, reason: &str) -> Error {
    Error::Refused(format!(
        "{reason}. Restarting Asterisk ends every call in progress, so featpkg changed nothing: run it again with --allow-restart at a quiet time{}",
        target.restart_consent_hint()
    ))
}

/// The reload a set of changed documents needs: files by their Asterisk names
/// (a PBX's `extensions_custom.conf` is dialplan too), rows by the file they end up in.
pub(crate) fn reload_for(
    plan: &Plan,
    load_modules: Vec<String>,
    expect_contexts: Vec<String>,
) -> ReloadRequest {
    let documents: Vec<&DocChange> = plan.changes.iter().filter(|c| !c.is_dir()).collect();
    // What each document ends up as in Asterisk's configuration.
    let files: Vec<String> = documents
        .iter()
        .map(|c| config_file(&c.doc, Path::new(&c.runtime_path)))
        .collect();
    ReloadRequest {
        load_modules,
        modules_conf: modules_conf_loads_more(plan),
        expect_contexts,
        changed: documents.iter().map(|c| c.runtime_path.clone()).collect(),
        ..reload_for_changed(&files.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

/// The configuration file a document ends up as (`named` as a path): itself,
/// or for a database row the file the PBX writes from it.
fn config_file(doc: &Doc, named: &Path) -> String {
    match doc {
        Doc::Row(row) => row.config_file(),
        _ => named.display().to_string(),
    }
}

/// The reloads that changed configuration files need (only their names and
/// directories matter).
fn reload_for_changed(changed: &[&str]) -> ReloadRequest {
    let name_changed = |pred: &dyn Fn(&str) -> bool| {
        changed
            .iter()
            .any(|p| pred(p.rsplit('/').next().unwrap_or(p)))
    };
    ReloadRequest {
        dialplan: name_changed(&|n| n == "extensions.conf" || n == "extensions_custom.conf"),
        pjsip: name_changed(&|n| {
            n == "pjsip.conf" || n == "pjsip_custom.conf" || n == "pjsip.endpoint_custom_post.conf"
        }),
        manager: name_changed(&|n| n == "manager.conf" || n == "manager_custom.conf"),
        crontab: changed
            .iter()
            .any(|p| p.ends_with("/crontab") || p.contains("/crontabs/") || p.contains("/cron.d/")),
        ..ReloadRequest::default()
    }
}
