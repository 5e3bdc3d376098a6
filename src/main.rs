//! The featpkg command line: parses arguments, calls one operation, prints the result.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use featpkg::ops::{
    self, PbxOptions, Session,
    install::{InstallOutcome, InstallRequest},
    rollback::{RollbackOutcome, RollbackRequest},
    uninstall::{UninstallOutcome, UninstallRequest},
};
use featpkg::pbx::{TargetKind, TargetOptions};

#[derive(Parser)]
#[command(
    name = "featpkg",
    version,
    about = "Reversible feature packages for Asterisk-based PBXs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Pbx {
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

#[derive(Subcommand)]
enum Command {
    /// Build the bundle archive (dist/<name>-<version>.zip) from the sources.
    Build {
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
    },
    /// Install, reconfigure or upgrade a bundle's features.
    Install {
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
        report: Report,
        #[command(flatten)]
        pbx: Pbx,
    },
    /// Remove a bundle, or one feature (name or bundle:feature).
    Uninstall {
        name: String,
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        no_reload: bool,
        /// Remove blocks even if they were edited by hand.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        report: Report,
        #[command(flatten)]
        pbx: Pbx,
    },
    /// List installed bundles, features, versions and parameters.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        pbx: Pbx,
    },
    /// Report drift (featpkg's files or blocks changed by hand, or missing); exit 1 if any.
    Verify {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        pbx: Pbx,
    },
    /// Undo the last committed transaction; repeat to go further back.
    Rollback {
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        no_reload: bool,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        report: Report,
        #[command(flatten)]
        pbx: Pbx,
    },
    /// Print the features of a bundle with their parameters (types, defaults,
    /// limits, help) and whether this PBX can run each, for a settings page.
    Schema {
        /// Print JSON (the only format a page should read).
        #[arg(long)]
        json: bool,
        /// The bundle: archive or module directory (default: the module
        /// directory this featpkg binary was shipped in).
        #[arg(long, value_name = "PATH")]
        bundle: Option<PathBuf>,
        /// PBX flavour the `unsupported` reasons are for.
        #[arg(long, default_value = "asterisk")]
        target: TargetKind,
    },
    /// Print the destinations the installed features offer to the PBX's
    /// destination pickers (FreePBX), as a JSON array.
    Destinations {
        /// The bundle holding the feature definitions: archive or module directory
        /// (default: the module directory this featpkg binary was shipped in).
        #[arg(long, value_name = "PATH")]
        bundle: Option<PathBuf>,
        #[command(flatten)]
        pbx: Pbx,
    },
    /// Finish an interrupted transaction (every command does this first anyway).
    Recover {
        #[command(flatten)]
        pbx: Pbx,
    },
}

/// How a change reports itself (for a settings page).
#[derive(Args, Clone)]
struct Report {
    /// Print the result as JSON on stdout: the changes with their diffs,
    /// warnings and `changed`; an error as {"error": {...}} (exit 2).
    #[arg(long)]
    json: bool,
    /// Say each step as it starts, on stderr: `featpkg: progress plan|write|reload|verify`.
    #[arg(long)]
    progress: bool,
}

impl Report {
    /// Turns on what was asked; from here on errors print as JSON too.
    fn start(&self) {
        JSON_ERRORS.store(self.json, std::sync::atomic::Ordering::Relaxed);
        ops::report_progress(self.progress);
        ops::progress(ops::ProgressStep::Plan);
    }
}

/// Whether the running command prints its error as JSON (`--json`).
static JSON_ERRORS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Pbx {
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
}

fn open(pbx: &Pbx, read_only: bool) -> Result<Session, ops::Error> {
    let session = Session::open(&PbxOptions {
        target: pbx.target,
        pbx: pbx.target_options(),
        allow_restart: pbx.allow_restart,
        lock_wait: Duration::from_secs(pbx.lock_wait),
        read_only,
    })?;
    if let Some(report) = &session.recovered {
        eprintln!("featpkg: {report}");
        for line in &report.pbx {
            eprintln!("featpkg:   {line}");
        }
    }
    Ok(session)
}

fn print_dry_run(preview: &ops::Preview) {
    let mut summary = preview.summary.clone();
    for warning in &preview.warnings {
        summary.push_str(&format!("; WARNING: {warning}"));
    }
    println!("dry run: {summary} would change:");
    print!("{}", preview.diff());
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serialisable")
    );
}

/// `--json` of a dry run: what would change, with the diff of each path.
fn preview_json(preview: &ops::Preview) -> serde_json::Value {
    serde_json::json!({
        "dry_run": true,
        "changed": !preview.changes.is_empty(),
        "summary": preview.summary,
        "changes": preview.changes,
        "warnings": preview.warnings,
    })
}

/// `--json` of an applied change: what changed (one line per path), what the
/// PBX said while reloading, hand edits overridden.
fn applied_json(applied: &ops::Applied) -> serde_json::Value {
    let changes: Vec<serde_json::Value> = applied
        .changes
        .iter()
        .map(|c| serde_json::json!({"path": c.path, "diff": format!("{c}\n")}))
        .collect();
    serde_json::json!({
        "dry_run": false,
        "changed": true,
        "summary": applied.summary,
        "transaction": applied.txn_id,
        "changes": changes,
        "warnings": applied.forced.iter().map(|f| format!("hand edit overwritten: {f}")).collect::<Vec<_>>(),
        "reload": applied.reload,
    })
}

/// `--json` when nothing changes (up to date, nothing to roll back).
fn unchanged_json(dry_run: bool, summary: &str) -> serde_json::Value {
    serde_json::json!({
        "dry_run": dry_run,
        "changed": false,
        "summary": summary,
        "changes": [],
        "warnings": [],
    })
}

fn print_applied(applied: &ops::Applied) {
    println!("{}", applied.summary);
    for line in &applied.changes {
        println!("  {line}");
    }
    for line in &applied.forced {
        println!("  warning: {line}");
    }
    for line in &applied.reload {
        println!("  {line}");
    }
    println!("done: transaction {}", applied.txn_id);
}

fn run(cli: Cli) -> Result<ExitCode, ops::Error> {
    match cli.command {
        Command::Build {
            source,
            bin_dir,
            target_dir,
            arch,
            out,
        } => {
            let path = ops::build::build(&ops::build::BuildRequest {
                source_dir: source,
                bin_dirs: bin_dir,
                target_dir,
                arches: arch,
                out_dir: out,
            })?;
            println!("built {}", path.display());
        }
        Command::Install {
            archive,
            features,
            sets,
            params_file,
            dry_run,
            no_reload,
            force,
            report,
            pbx,
        } => {
            report.start();
            let mut session = open(&pbx, dry_run)?;
            let request = InstallRequest {
                archive,
                features,
                sets,
                params_file,
                dry_run,
                no_reload,
                force,
            };
            match ops::install::install(&mut session, &request)? {
                InstallOutcome::UpToDate { bundle, version } => {
                    let said = format!("{bundle} {version} is up to date; nothing changed");
                    if report.json {
                        print_json(&unchanged_json(dry_run, &said));
                    } else {
                        println!("{said}");
                    }
                }
                InstallOutcome::DryRun(preview) if report.json => {
                    print_json(&preview_json(&preview))
                }
                InstallOutcome::DryRun(preview) => print_dry_run(&preview),
                InstallOutcome::Applied(applied) if report.json => {
                    print_json(&applied_json(&applied))
                }
                InstallOutcome::Applied(applied) => print_applied(&applied),
            }
        }
        Command::Uninstall {
            name,
            dry_run,
            no_reload,
            force,
            report,
            pbx,
        } => {
            report.start();
            let mut session = open(&pbx, dry_run)?;
            let request = UninstallRequest {
                name,
                dry_run,
                no_reload,
                force,
            };
            match ops::uninstall::uninstall(&mut session, &request)? {
                UninstallOutcome::DryRun(preview) if report.json => {
                    print_json(&preview_json(&preview))
                }
                UninstallOutcome::DryRun(preview) => print_dry_run(&preview),
                UninstallOutcome::Applied(applied) if report.json => {
                    print_json(&applied_json(&applied))
                }
                UninstallOutcome::Applied(applied) => print_applied(&applied),
            }
        }
        Command::Status { json, pbx } => {
            let session = open(&pbx, true)?;
            let bundles = ops::inspect::status(&session)?;
            if json {
                print_json(&bundles);
            } else if bundles.is_empty() {
                println!("nothing installed");
            } else {
                for b in &bundles {
                    println!("{} {}", b.name, b.version);
                    for f in &b.features {
                        println!("  {} {}", f.id, f.version);
                        for (k, v) in &f.params {
                            let mark = if f.user_params.contains_key(k) {
                                " (set)"
                            } else {
                                ""
                            };
                            println!("    {k} = {v}{mark}");
                        }
                    }
                }
            }
        }
        Command::Verify { json, pbx } => {
            let session = open(&pbx, true)?;
            let drift = ops::inspect::verify(&session)?;
            if json {
                print_json(&drift);
            } else if drift.is_empty() {
                println!("no drift: every installed file and block is as featpkg wrote it");
            } else {
                for d in &drift {
                    println!(
                        "{}: {} {} ({}): {}",
                        d.path, d.kind, d.edit, d.bundle, d.detail
                    );
                }
            }
            if !drift.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Rollback {
            dry_run,
            no_reload,
            force,
            report,
            pbx,
        } => {
            report.start();
            let mut session = open(&pbx, dry_run)?;
            let request = RollbackRequest {
                dry_run,
                no_reload,
                force,
            };
            match ops::rollback::rollback(&mut session, &request)? {
                RollbackOutcome::NothingToUndo if report.json => {
                    print_json(&unchanged_json(dry_run, "nothing to roll back"))
                }
                RollbackOutcome::NothingToUndo => println!("nothing to roll back"),
                RollbackOutcome::DryRun(preview) if report.json => {
                    print_json(&preview_json(&preview))
                }
                RollbackOutcome::DryRun(preview) => print_dry_run(&preview),
                RollbackOutcome::Applied(applied) if report.json => {
                    print_json(&applied_json(&applied))
                }
                RollbackOutcome::Applied(applied) => print_applied(&applied),
            }
        }
        Command::Destinations { bundle, pbx } => {
            let options = pbx.target_options();
            let list = ops::destinations::destinations(pbx.target, &options, bundle.as_deref())?;
            print_json(&list);
        }
        Command::Schema {
            json,
            bundle,
            target,
        } => {
            JSON_ERRORS.store(json, std::sync::atomic::Ordering::Relaxed);
            let path = match bundle {
                Some(p) => p,
                None => ops::destinations::own_bundle_dir().ok_or_else(|| {
                    ops::Error::Refused(
                        "featpkg schema needs a bundle: give --bundle PATH (its archive or module directory); no bundle.json was found around the featpkg binary".into(),
                    )
                })?,
            };
            let schema = ops::schema::schema(target, &path)?;
            if json {
                print_json(&schema);
            } else {
                println!(
                    "{} {} (for {})",
                    schema.bundle.name, schema.bundle.version, schema.target
                );
                for f in &schema.features {
                    println!("  {} {}: {}", f.id, f.version, f.summary);
                    if let Some(why) = &f.unsupported {
                        println!("    not on {}: {why}", schema.target);
                    }
                    for p in &f.params {
                        let required = if p.required { " (required)" } else { "" };
                        println!(
                            "    {} ({}) = {:?}{required}: {}",
                            p.name, p.ty, p.default, p.help
                        );
                    }
                }
            }
        }
        Command::Recover { pbx } => {
            let session = open(&pbx, false)?;
            if session.recovered.is_none() {
                println!("nothing to recover");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("featpkg: error: {e}");
            if JSON_ERRORS.load(std::sync::atomic::Ordering::Relaxed) {
                print_json(&serde_json::json!({ "error": e.report() }));
            }
            ExitCode::from(2)
        }
    }
}
