//! The subcommands, one module each: its arguments (a clap `Args` struct) and
//! a `run` that translates them into a request for `featpkg::ops`, calls it,
//! and returns what happened as an [`Outcome`] for [`output`] to print. The
//! options every PBX command shares are [`PbxArgs`]; how a change reports
//! itself to a settings page is [`ReportArgs`].

mod build;
mod destinations;
mod install;
pub mod output;
mod recover;
mod rollback;
mod schema;
mod status;
mod uninstall;
mod verify;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use featpkg::ops::{self, PbxOptions, Session};
use featpkg::pbx::{TargetKind, TargetOptions};

pub use output::{Format, Outcome};

/// The subcommands; each variant's doc comment is its `--help` summary.
#[derive(Subcommand)]
pub enum Command {
    /// Build the bundle archive (dist/<name>-<version>.zip) from the sources.
    Build(build::BuildArgs),
    /// Install, reconfigure or upgrade a bundle's features.
    Install(install::InstallArgs),
    /// Remove a bundle, or one feature (name or bundle:feature).
    Uninstall(uninstall::UninstallArgs),
    /// List installed bundles, features, versions and parameters.
    Status(status::StatusArgs),
    /// Report drift (featpkg's files or blocks changed by hand, or missing); exit 1 if any.
    Verify(verify::VerifyArgs),
    /// Undo the last committed transaction; repeat to go further back.
    Rollback(rollback::RollbackArgs),
    /// Print the features of a bundle with their parameters (types, defaults,
    /// limits, help) and whether this PBX can run each, for a settings page.
    Schema(schema::SchemaArgs),
    /// Print the destinations the installed features offer to the PBX's
    /// destination pickers (FreePBX), as a JSON array.
    Destinations(destinations::DestinationsArgs),
    /// Finish an interrupted transaction (every command does this first anyway).
    Recover(recover::RecoverArgs),
}

impl Command {
    /// How this command prints its outcome and its error.
    pub fn format(&self) -> Format {
        match self {
            Command::Install(args) => args.report.format(),
            Command::Uninstall(args) => args.report.format(),
            Command::Rollback(args) => args.report.format(),
            Command::Schema(args) => Format::json_if(args.json),
            Command::Status(args) => Format::listing(args.json),
            Command::Verify(args) => Format::listing(args.json),
            // A destination picker reads JSON only.
            Command::Destinations(_) => Format::listing(true),
            Command::Build(_) | Command::Recover(_) => Format::default(),
        }
    }

    /// Runs the command.
    pub fn run(self) -> Result<Outcome, ops::Error> {
        match self {
            Command::Build(args) => build::run(args),
            Command::Install(args) => install::run(args),
            Command::Uninstall(args) => uninstall::run(args),
            Command::Status(args) => status::run(args),
            Command::Verify(args) => verify::run(args),
            Command::Rollback(args) => rollback::run(args),
            Command::Schema(args) => schema::run(args),
            Command::Destinations(args) => destinations::run(args),
            Command::Recover(args) => recover::run(args),
        }
    }
}

/// Where the PBX is, how to reach it, and what a change on it may do: the
/// options every command that works on a PBX takes.
#[derive(Args, Clone)]
pub struct PbxArgs {
    /// Prefix every PBX path with DIR (a PBX tree in a directory; default /).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/",
        env = "FEATPKG_ROOT",
        global = true
    )]
    root: PathBuf,
    /// asterisk.conf to read the directories from (a path on the PBX, under --root).
    #[arg(
        long,
        value_name = "PATH",
        env = "FEATPKG_ASTERISK_CONF",
        global = true
    )]
    asterisk_conf: Option<String>,
    /// PBX flavour: asterisk (plain), freepbx or mikopbx.
    #[arg(long, default_value = "asterisk", global = true)]
    target: TargetKind,
    /// Asterisk CLI command used for reloads, e.g. "asterisk -C /etc/asterisk/asterisk.conf"
    /// (default: $FEATPKG_ASTERISK_CMD, else `asterisk`).
    #[arg(long, value_name = "CMD", global = true)]
    asterisk_cmd: Option<String>,
    /// The PBX's own reload command (freepbx: "fwconsole reload"; mikopbx: the module's
    /// bin/featpkg-reload.php, given what to reload as arguments).
    #[arg(long, value_name = "CMD", env = "FEATPKG_RELOAD_CMD", global = true)]
    reload_cmd: Option<String>,
    /// mikopbx: the module's directory (AGI programs and featpkg's state live there).
    #[arg(long, value_name = "DIR", global = true)]
    module_dir: Option<String>,
    /// mikopbx: the configuration database (default /cf/conf/mikopbx.db).
    #[arg(long, value_name = "PATH", env = "FEATPKG_CONFIG_DB", global = true)]
    config_db: Option<String>,
    /// freepbx, when not run as root (the web UI runs it as asterisk): the crontab(1)
    /// program that changes that user's own crontab (default /usr/bin/crontab).
    #[arg(long, value_name = "PATH", env = "FEATPKG_CRONTAB_CMD", global = true)]
    crontab_cmd: Option<String>,
    /// Go ahead with changes that restart Asterisk, which ends every live call
    /// (mikopbx: a change to modules.conf).
    #[arg(long, global = true)]
    allow_restart: bool,
    /// Seconds to wait for another featpkg run on this PBX to finish.
    #[arg(long, value_name = "SECONDS", default_value_t = 5, global = true)]
    lock_wait: u64,
}

impl PbxArgs {
    /// The PBX as the library's target takes it.
    fn target_options(&self) -> TargetOptions {
        TargetOptions {
            root: self.root.clone(),
            asterisk_conf: self.asterisk_conf.clone(),
            asterisk_cmd: self.asterisk_cmd.clone(),
            reload_cmd: self.reload_cmd.clone(),
            module_dir: self.module_dir.clone(),
            config_db: self.config_db.clone(),
            crontab_cmd: self.crontab_cmd.clone(),
        }
    }

    /// Opens the PBX (lock, state, crash recovery); says on stderr what
    /// recovery did, as it happens, before the command goes on.
    fn open(&self, read_only: bool) -> Result<Session, ops::Error> {
        self.open_session(read_only, false)
    }

    /// Opens the PBX for a change (a dry run only reads), saying its steps
    /// when `report` asks for progress lines.
    fn open_for_change(&self, dry_run: bool, report: &ReportArgs) -> Result<Session, ops::Error> {
        self.open_session(dry_run, report.progress)
    }

    fn open_session(&self, read_only: bool, progress: bool) -> Result<Session, ops::Error> {
        let session = Session::open(&PbxOptions {
            target: self.target,
            pbx: self.target_options(),
            allow_restart: self.allow_restart,
            lock_wait: Duration::from_secs(self.lock_wait),
            read_only,
            progress,
        })?;
        if let Some(report) = &session.recovered {
            output::print_recovery(report);
        }
        Ok(session)
    }
}

/// How a change (install, uninstall, rollback) reports itself (for a settings page).
#[derive(Args, Clone)]
pub struct ReportArgs {
    /// Print the result as JSON on stdout: the changes with their diffs,
    /// warnings and `changed`; an error as {"error": {...}} (exit 2).
    #[arg(long)]
    json: bool,
    /// Say each step as it starts, on stderr: `featpkg: progress plan|write|reload|verify`.
    #[arg(long)]
    progress: bool,
}

impl ReportArgs {
    /// The outcome and any error as JSON, or both as text.
    fn format(&self) -> Format {
        Format::json_if(self.json)
    }
}
