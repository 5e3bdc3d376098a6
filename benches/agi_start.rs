//! What one call pays for an AGI program: Asterisk forks and execs it for every
//! call (reference/asterisk.md §1.1), so its start-up cost is per call.
//!
//! Runs the shipped static `featpkg-operator-alert` in `play` mode through a whole
//! conversation (the real `agi_*` environment block, `DATABASE GET`, `SET
//! VARIABLE`, with Asterisk's replies fed from a file, as in reference §6) and
//! compares it, in the same run, with two baselines doing the same on the same
//! stdin: `/bin/true` (a do-nothing program, dynamically linked like most of
//! what runs in agi-bin, so it also pays the loader: ours is static and may beat
//! it) and the same conversation as a plain Perl script (the cheapest of the
//! scripting AGIs in reference §6).
//!
//!     bash .ci/build-static && cargo bench --bench agi_start
//!
//! Prints the median wall time per run of each and the ratios; asserts nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 300;

const PERL_AGI: &str = r#"$|=1; while (<STDIN>) { last if $_ eq "\n"; }
print "DATABASE GET op_alert 201\n"; my $r = <STDIN>;
print "SET VARIABLE OPERATOR_ALERT_PLAYED 0\n"; $r = <STDIN>; exit 0;"#;

/// Asterisk's environment block for a call to 201 in the no-answer context, then
/// its replies: the operator has no message (`DATABASE GET` → 0), `SET VARIABLE` → 1.
fn conversation() -> String {
    let env = [
        (
            "agi_request",
            "/var/lib/asterisk/agi-bin/featpkg-operator-alert",
        ),
        ("agi_channel", "PJSIP/202-00000001"),
        ("agi_language", "en"),
        ("agi_type", "PJSIP"),
        ("agi_uniqueid", "1700000000.1"),
        ("agi_version", "20.5.0"),
        ("agi_callerid", "202"),
        ("agi_calleridname", "Reception"),
        ("agi_callingpres", "0"),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", "201"),
        ("agi_rdnis", "unknown"),
        ("agi_context", "featpkg-operator-alert-noanswer"),
        ("agi_extension", "201"),
        ("agi_priority", "1"),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", ""),
        ("agi_threadid", "140000000000000"),
        ("agi_arg_1", "play"),
    ];
    let mut text: String = env.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    text.push('\n');
    text.push_str("200 result=0\n200 result=1\n");
    text
}

fn median_run(program: &Path, args: &[&str], stdin_file: &Path) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let stdin = std::fs::File::open(stdin_file).expect("stdin file");
            let start = Instant::now();
            let status = Command::new(program)
                .args(args)
                .stdin(stdin)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
            let took = start.elapsed();
            assert!(status.success(), "{} failed: {status}", program.display());
            took
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}

fn main() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let agi = repo.join("target/x86_64-unknown-linux-musl/release/featpkg-operator-alert");
    assert!(
        agi.is_file(),
        "{} is missing: run `bash .ci/build-static` first",
        agi.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let stdin_file = dir.path().join("asterisk-says");
    std::fs::write(&stdin_file, conversation()).expect("write stdin");
    let recordings = dir.path().join("recordings");
    let dir_arg = format!("dir={}", recordings.display());

    let floor = median_run(Path::new("/bin/true"), &[], &stdin_file);
    let ours = median_run(&agi, &["play", "pattern=_XXX", &dir_arg], &stdin_file);
    let perl = median_run(Path::new("perl"), &["-e", PERL_AGI], &stdin_file);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("AGI start-up, median of {RUNS} runs each (same stdin, same machine, this run):");
    println!("  /bin/true (dynamic, does nothing)  {:7.3} ms", ms(floor));
    println!(
        "  featpkg-operator-alert play        {:7.3} ms   {:5.2}x /bin/true",
        ms(ours),
        ms(ours) / ms(floor)
    );
    println!(
        "  same conversation in plain Perl    {:7.3} ms   {:5.2}x /bin/true, {:5.2}x ours",
        ms(perl),
        ms(perl) / ms(floor),
        ms(perl) / ms(ours)
    );
}
