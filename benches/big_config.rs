//! What featpkg costs on a big dialplan: a plain-Asterisk PBX tree (the test
//! fixture, `tests/fixtures/pbx`) whose `extensions.conf` has 1,000,000 lines
//! (about 28 MB: many tenant contexts with `exten`/`same` lines, comments,
//! `include =>` lines and an `#include`), as a large hosted PBX has.
//!
//! Each run takes a fresh copy of the tree and times, with the demo bundle built
//! the way the tests build it, `install <bundle> --features
//! call-waiting,operator-alert --no-reload` as a `--dry-run`, then for real,
//! again (a no-op reinstall), `verify`, `uninstall <bundle> --no-reload`, then
//! `rollback --no-reload` twice (the uninstall, then the install: each must
//! give back the exact files, checked).
//! Each is compared with a baseline measured in the same run, right after it:
//! copying and fsyncing the files the command writes (install, and reinstall
//! against the same; the dry run against what the install writes), or reading
//! them (verify). Peak memory is the command's maximum resident set size
//! (getrusage of a helper process that runs only it) against the largest of
//! those files. For each command that records a transaction, what state.db
//! grew by is set against the size of the change (per changed file, the bytes
//! between the common start and end of its two versions).
//!
//!     bash .ci/build-static && cargo bench --bench big_config
//!
//! `FEATPKG_BENCH_RUNS` (default 3) sets the repetitions, `FEATPKG_BENCH_BIN`
//! the featpkg binary timed (default: the one cargo built for this bench; the
//! shipped one is `target/x86_64-unknown-linux-musl/release/featpkg`). Prints
//! medians and ratios; asserts nothing but that every command succeeds.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BUNDLE, Pbx, bundle, featpkg_bin};

/// Lines of the generated `extensions.conf`.
const LINES: usize = 1_000_000;

/// Set in the helper process that runs one command and reports its rusage.
const CHILD_ENV: &str = "FEATPKG_BENCH_CHILD";

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        run_as_child();
        return;
    }
    let runs: usize = std::env::var("FEATPKG_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    let program = std::env::var_os("FEATPKG_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(featpkg_bin);
    let bundle = bundle();
    let dialplan = big_dialplan();
    let mut results: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    for _ in 0..runs {
        for (name, sample) in one_run(&program, &bundle, &dialplan) {
            results.entry(name).or_default().push(sample);
        }
    }
    report(&program, dialplan.len(), runs, &results);
}

/// One command's figures in one run.
struct Sample {
    took: Duration,
    baseline: Duration,
    baseline_what: String,
    max_rss: u64,
    largest_file: u64,
    /// For a transaction: what state.db grew by, and the size of the change.
    history: Option<(u64, u64)>,
}

/// A fresh tree; every command in order, each followed by its baseline.
fn one_run(program: &Path, bundle: &Path, dialplan: &[u8]) -> Vec<(&'static str, Sample)> {
    let pbx = Pbx::new();
    std::fs::write(pbx.etc("extensions.conf"), dialplan).expect("write extensions.conf");
    std::fs::write(pbx.etc("extensions_tenants.conf"), TENANTS_INCLUDE).expect("write include");
    let bundle = bundle.to_str().expect("utf-8 path");
    let install = [
        "install",
        bundle,
        "--features",
        "call-waiting,operator-alert",
        "--no-reload",
    ];
    let dry_run: Vec<&str> = install.iter().copied().chain(["--dry-run"]).collect();
    let uninstall = ["uninstall", BUNDLE, "--no-reload"];

    let before = files_of(&pbx);
    let dry = timed(&pbx, program, &dry_run);
    let db = state_db_size(&pbx);
    let installed = timed(&pbx, program, &install);
    let after_install = files_of(&pbx);
    let install_history = history(&pbx, db, &before, &after_install);
    let written = changed_files(&before, &after_install);
    let copy = |files: &[PathBuf]| Baseline::measure("copy+fsync", files, copy_and_fsync);
    let install_base = copy(&written);
    let dry_base = copy(&written);
    let db = state_db_size(&pbx);
    let reinstalled = timed(&pbx, program, &install);
    assert_eq!(files_of(&pbx), after_install, "a reinstall changed files");
    let reinstall_history = history(&pbx, db, &after_install, &after_install);
    let reinstall_base = copy(&written);
    let verified = timed(&pbx, program, &["verify"]);
    let verify_base = Baseline::measure("read", &written, read_all);
    let db = state_db_size(&pbx);
    let uninstalled = timed(&pbx, program, &uninstall);
    let after_uninstall = files_of(&pbx);
    let uninstall_history = history(&pbx, db, &after_install, &after_uninstall);
    let unwritten = changed_files(&after_install, &after_uninstall);
    let uninstall_base = copy(&unwritten);
    let rollback = ["rollback", "--no-reload"];
    let db = state_db_size(&pbx);
    let undone_uninstall = timed(&pbx, program, &rollback);
    assert!(
        files_of(&pbx) == after_install,
        "rolling back the uninstall did not give back the installed files"
    );
    let undo_uninstall_history = history(&pbx, db, &after_uninstall, &after_install);
    let undo_uninstall_base = copy(&written);
    let db = state_db_size(&pbx);
    let undone_install = timed(&pbx, program, &rollback);
    assert!(
        files_of(&pbx) == before,
        "rolling back the install did not give back the original files"
    );
    let undo_install_history = history(&pbx, db, &after_install, &before);
    let undo_install_base = copy(&unwritten);
    vec![
        ("1 install --dry-run", sample(dry, dry_base, None)),
        (
            "2 install",
            sample(installed, install_base, install_history),
        ),
        (
            "3 reinstall (no-op)",
            sample(reinstalled, reinstall_base, reinstall_history),
        ),
        ("4 verify", sample(verified, verify_base, None)),
        (
            "5 uninstall",
            sample(uninstalled, uninstall_base, uninstall_history),
        ),
        (
            "6 rollback uninstall",
            sample(
                undone_uninstall,
                undo_uninstall_base,
                undo_uninstall_history,
            ),
        ),
        (
            "7 rollback install",
            sample(undone_install, undo_install_base, undo_install_history),
        ),
    ]
}

/// Size of featpkg's state database, 0 before it exists.
fn state_db_size(pbx: &Pbx) -> u64 {
    std::fs::metadata(pbx.root().join("var/lib/asterisk/featpkg/state.db")).map_or(0, |m| m.len())
}

/// What state.db grew by since it was `db_before` bytes, and the size of the
/// change from `from` to `to`.
fn history(
    pbx: &Pbx,
    db_before: u64,
    from: &BTreeMap<PathBuf, Vec<u8>>,
    to: &BTreeMap<PathBuf, Vec<u8>>,
) -> Option<(u64, u64)> {
    let growth = state_db_size(pbx).saturating_sub(db_before);
    let empty = Vec::new();
    let change = from
        .keys()
        .chain(to.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|path| {
            common::changed_bytes(
                from.get(path).unwrap_or(&empty),
                to.get(path).unwrap_or(&empty),
            )
        })
        .sum();
    Some((growth, change))
}

/// A baseline's time, what it did, and the largest file it handled.
struct Baseline {
    took: Duration,
    what: String,
    largest_file: u64,
}

impl Baseline {
    fn measure(what: &str, files: &[PathBuf], how: fn(&[PathBuf]) -> Duration) -> Baseline {
        let sizes: Vec<u64> = files
            .iter()
            .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
            .collect();
        Baseline {
            took: how(files),
            what: format!(
                "{what} {} files, {:.1} MB",
                files.len(),
                mb(sizes.iter().sum())
            ),
            largest_file: sizes.into_iter().max().unwrap_or(0),
        }
    }
}

fn sample(
    (took, max_rss): (Duration, u64),
    baseline: Baseline,
    history: Option<(u64, u64)>,
) -> Sample {
    Sample {
        history,
        took,
        baseline: baseline.took,
        baseline_what: baseline.what,
        max_rss,
        largest_file: baseline.largest_file,
    }
}

/// Runs featpkg with `args` on `pbx` through a helper process that runs only
/// it: its wall time and its peak RSS in bytes.
fn timed(pbx: &Pbx, program: &Path, args: &[&str]) -> (Duration, u64) {
    let inner = pbx.command(args, &[]);
    let mut outer = Command::new(std::env::current_exe().expect("own path"));
    outer
        .env(CHILD_ENV, "1")
        .arg(program)
        .args(inner.get_args());
    for (key, value) in inner.get_envs() {
        match value {
            Some(v) => outer.env(key, v),
            None => outer.env_remove(key),
        };
    }
    let out = outer.output().expect("run helper");
    assert!(
        out.status.success(),
        "featpkg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    let mut words = said
        .split_whitespace()
        .map(|w| w.parse::<u64>().expect("number"));
    let nanos = words.next().expect("time");
    let max_rss_kib = words.next().expect("rss");
    (Duration::from_nanos(nanos), max_rss_kib * 1024)
}

/// The helper: runs its arguments (featpkg's stdout discarded, stderr passed
/// on), prints `<nanoseconds> <max RSS KiB>` and exits with its status.
fn run_as_child() {
    let mut args = std::env::args_os().skip(1);
    let program = args.next().expect("program");
    let start = Instant::now();
    let status = Command::new(program)
        .args(args)
        .env_remove(CHILD_ENV)
        .stdout(Stdio::null())
        .status()
        .expect("run featpkg");
    let took = start.elapsed();
    println!("{} {}", took.as_nanos(), children_max_rss_kib());
    std::process::exit(status.code().unwrap_or(1));
}

/// `struct rusage` on Linux: two `timeval`s, then fourteen `long`s, `ru_maxrss` first.
#[repr(C)]
struct Rusage {
    times: [[i64; 2]; 2],
    counters: [i64; 14],
}

unsafe extern "C" {
    fn getrusage(who: i32, usage: *mut Rusage) -> i32;
}

/// The largest maximum RSS (KiB) of the children waited for: here, the only one.
fn children_max_rss_kib() -> u64 {
    const RUSAGE_CHILDREN: i32 = -1;
    let mut usage = Rusage {
        times: [[0; 2]; 2],
        counters: [0; 14],
    };
    // SAFETY: getrusage writes one struct rusage, whose Linux layout Rusage has.
    let rc = unsafe { getrusage(RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed");
    usage.counters[0] as u64
}

/// Every file under the PBX root but featpkg's state, with its bytes.
fn files_of(pbx: &Pbx) -> BTreeMap<PathBuf, Vec<u8>> {
    pbx.snapshot()
        .into_iter()
        .filter(|(rel, _)| !rel.ends_with('/'))
        .map(|(rel, (bytes, _))| (pbx.root().join(rel), bytes))
        .collect()
}

/// The files that exist in `after` with other bytes than in `before` (or new).
fn changed_files(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
) -> Vec<PathBuf> {
    after
        .iter()
        .filter(|(path, bytes)| before.get(*path) != Some(*bytes))
        .map(|(path, _)| path.clone())
        .collect()
}

/// Copies each file next to itself and fsyncs the copy (then removes it).
fn copy_and_fsync(files: &[PathBuf]) -> Duration {
    let copies: Vec<PathBuf> = files
        .iter()
        .map(|f| f.with_extension("bench-copy"))
        .collect();
    let start = Instant::now();
    for (file, copy) in files.iter().zip(&copies) {
        std::fs::copy(file, copy).expect("copy");
        std::fs::File::open(copy)
            .and_then(|f| f.sync_all())
            .expect("fsync");
    }
    let took = start.elapsed();
    for copy in copies {
        std::fs::remove_file(copy).expect("remove copy");
    }
    took
}

fn read_all(files: &[PathBuf]) -> Duration {
    let start = Instant::now();
    let bytes: usize = files
        .iter()
        .map(|f| std::fs::read(f).expect("read").len())
        .sum();
    let took = start.elapsed();
    assert!(bytes > 0);
    took
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn report(program: &Path, size: usize, runs: usize, results: &BTreeMap<&str, Vec<Sample>>) {
    let secs = |d: Duration| d.as_secs_f64();
    println!(
        "{LINES}-line extensions.conf ({:.1} MB), median of {runs} runs, featpkg = {}",
        mb(size as u64),
        program.display()
    );
    println!(
        "{:<20} {:>8} {:>8} {:>7}  {:>9} {:>8}  {:>10} {:>9} {:>7}  baseline",
        "command",
        "time s",
        "base s",
        "ratio",
        "peak RSS",
        "/largest",
        "state.db +",
        "change",
        "/change"
    );
    for (name, samples) in results {
        let took = median(samples.iter().map(|s| s.took).collect());
        let baseline = median(samples.iter().map(|s| s.baseline).collect());
        let max_rss = samples.iter().map(|s| s.max_rss).max().unwrap_or(0);
        let largest = samples[0].largest_file.max(1);
        let history = match samples.iter().filter_map(|s| s.history).max() {
            Some((growth, change)) => format!(
                "{:>8} B {:>7} B {:>6.1}x",
                growth,
                change,
                growth as f64 / change.max(1) as f64
            ),
            None => format!("{:>10} {:>9} {:>7}", "", "", ""),
        };
        let mut line = String::new();
        write!(
            line,
            "{:<20} {:>8.3} {:>8.3} {:>6.2}x  {:>6.1} MB {:>7.2}x  {history}  {}",
            &name[2..],
            secs(took),
            secs(baseline),
            secs(took) / secs(baseline),
            mb(max_rss),
            max_rss as f64 / largest as f64,
            samples[0].baseline_what
        )
        .expect("write to string");
        println!("{line}");
    }
    std::io::stdout().flush().expect("flush");
}

/// The small file the big dialplan `#include`s.
const TENANTS_INCLUDE: &str = "; contexts shared by every tenant\n\
[tenant-common]\n\
exten => _X.,1,NoOp(shared)\n same => n,Hangup()\n";

/// The fixture's own dialplan, then tenant contexts up to [`LINES`] lines.
fn big_dialplan() -> Vec<u8> {
    let fixture = common::repo().join("tests/fixtures/pbx/etc/asterisk/extensions.conf");
    let mut text = std::fs::read_to_string(fixture).expect("fixture dialplan");
    text.push_str("#include extensions_tenants.conf\n\n");
    let mut lines = text.lines().count();
    let mut tenant = 0;
    while lines < LINES {
        let context = tenant_context(tenant);
        let take = context.lines().count().min(LINES - lines);
        for line in context.lines().take(take) {
            text.push_str(line);
            text.push('\n');
        }
        lines += take;
        tenant += 1;
    }
    text.into_bytes()
}

/// One tenant's internal context: a comment header, includes, extensions with
/// their `same =>` priorities, a hint, a blank line.
fn tenant_context(tenant: usize) -> String {
    let mut c = format!(
        "; ---- tenant {tenant}: internal calls ----\n[t{tenant}-internal]\ninclude => tenant-common\ninclude => t{tenant}-features\n"
    );
    for ext in 0..8 {
        let e = 200 + ext;
        writeln!(c, "exten => {e},hint,PJSIP/t{tenant}-{e}").expect("string");
        writeln!(c, "exten => {e},1,NoOp(to ${{EXTEN}})").expect("string");
        writeln!(c, " same => n,Set(CDR(t)={tenant})").expect("string");
        writeln!(c, " same => n,Dial(PJSIP/t{tenant}-{e},30)").expect("string");
        writeln!(c, " same => n,Hangup() ; end").expect("string");
    }
    c.push_str(";-- old:\nexten => 299,1,NoOp()\n--;\n\n");
    c
}
