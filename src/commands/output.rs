//! What a command ended with ([`Outcome`]), and the one place it is printed:
//! as text for people, or as JSON for a settings page (`--json`). Errors print
//! here too: the message on stderr and, where `--json` asks, `{"error": …}` on stdout.

use std::path::PathBuf;

use featpkg::feature::RenderedDestination;
use featpkg::ops::{self, Applied, Preview, inspect::Drift, schema::Schema};
use featpkg::state::BundleSnapshot;
use featpkg::txn::RecoveryReport;

/// How a command prints.
#[derive(Debug, Clone, Copy, Default)]
pub struct Format {
    /// The outcome as JSON on stdout, instead of text.
    pub json: bool,
    /// An error as `{"error": …}` on stdout as well, after the message on stderr.
    pub json_error: bool,
}

impl Format {
    /// JSON for the outcome and the error when `json`, else text.
    pub fn json_if(json: bool) -> Format {
        Format {
            json,
            json_error: json,
        }
    }

    /// A listing's format: JSON for the outcome when `json`, an error as text
    /// only (a listing's `--json` is for its result).
    pub fn listing(json: bool) -> Format {
        Format {
            json,
            json_error: false,
        }
    }
}

/// What a command ended with.
pub enum Outcome {
    /// `build`: the archive written.
    Built(PathBuf),
    /// A change with nothing to do (up to date, nothing to roll back), in a sentence.
    Unchanged {
        /// The change was asked as a dry run (its JSON says so).
        dry_run: bool,
        /// What the admin reads, e.g. "nothing to roll back".
        summary: String,
    },
    /// A change's `--dry-run`: what it would change.
    Preview(Preview),
    /// A change made and committed.
    Applied(Applied),
    /// `status`: every installed bundle.
    Status(Vec<BundleSnapshot>),
    /// `verify`: each difference from what featpkg wrote (empty: none).
    Drift(Vec<Drift>),
    /// `schema`: a bundle's features and parameters.
    Schema(Schema),
    /// `destinations`: what the installed features offer to destination pickers.
    Destinations(Vec<RenderedDestination>),
    /// `recover`: whether an interrupted transaction was found (what was done
    /// about it was said when the PBX was opened).
    Recovered { found: bool },
}

impl Outcome {
    /// `verify` found drift: the command exits 1.
    pub fn found_drift(&self) -> bool {
        matches!(self, Outcome::Drift(drift) if !drift.is_empty())
    }

    /// Prints the outcome on stdout, as `format` asks.
    pub fn print(&self, format: Format) {
        if format.json {
            self.print_json();
        } else {
            self.print_text();
        }
    }

    fn print_json(&self) {
        match self {
            Outcome::Unchanged { dry_run, summary } => {
                print_json(&unchanged_json(*dry_run, summary))
            }
            Outcome::Preview(preview) => print_json(&preview_json(preview)),
            Outcome::Applied(applied) => print_json(&applied_json(applied)),
            Outcome::Status(bundles) => print_json(bundles),
            Outcome::Drift(drift) => print_json(drift),
            Outcome::Schema(schema) => print_json(schema),
            Outcome::Destinations(list) => print_json(list),
            // No JSON form: their commands take no --json.
            Outcome::Built(_) | Outcome::Recovered { .. } => self.print_text(),
        }
    }

    fn print_text(&self) {
        match self {
            Outcome::Built(path) => println!("built {}", path.display()),
            Outcome::Unchanged { summary, .. } => println!("{summary}"),
            Outcome::Preview(preview) => print_preview(preview),
            Outcome::Applied(applied) => print_applied(applied),
            Outcome::Status(bundles) => print_status(bundles),
            Outcome::Drift(drift) => print_drift(drift),
            Outcome::Schema(schema) => print_schema(schema),
            // A picker's list has only the one form.
            Outcome::Destinations(list) => print_json(list),
            Outcome::Recovered { found: true } => {}
            Outcome::Recovered { found: false } => println!("nothing to recover"),
        }
    }
}

/// Says the error on stderr and, when `format` asks, as `{"error": …}` on stdout
/// (with the feature and parameter it is about, for a form to show beside the value).
pub fn print_error(error: &ops::Error, format: Format) {
    eprintln!("featpkg: error: {error}");
    if format.json_error {
        print_json(&serde_json::json!({ "error": error.report() }));
    }
}

/// Says on stderr what crash recovery did on opening the PBX.
pub fn print_recovery(report: &RecoveryReport) {
    eprintln!("featpkg: {report}");
    for line in &report.pbx {
        eprintln!("featpkg:   {line}");
    }
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serialisable")
    );
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

/// `--json` of a dry run: what would change, with the diff of each path.
fn preview_json(preview: &Preview) -> serde_json::Value {
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
fn applied_json(applied: &Applied) -> serde_json::Value {
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

/// A dry run: the summary with its warnings, then the unified diff.
fn print_preview(preview: &Preview) {
    let mut summary = preview.summary.clone();
    for warning in &preview.warnings {
        summary.push_str(&format!("; WARNING: {warning}"));
    }
    println!("dry run: {summary} would change:");
    print!("{}", preview.diff());
}

fn print_applied(applied: &Applied) {
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

/// Each bundle, its features, and their parameters (those the admin set marked).
fn print_status(bundles: &[BundleSnapshot]) {
    if bundles.is_empty() {
        println!("nothing installed");
    }
    for b in bundles {
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

fn print_drift(drift: &[Drift]) {
    if drift.is_empty() {
        println!("no drift: every installed file and block is as featpkg wrote it");
    }
    for d in drift {
        println!(
            "{}: {} {} ({}): {}",
            d.path, d.kind, d.edit, d.bundle, d.detail
        );
    }
}

/// The bundle, then each feature with why this PBX cannot run it (if so) and its parameters.
fn print_schema(schema: &Schema) {
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
