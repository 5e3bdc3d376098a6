//! Build script: only one job. The real-Asterisk suite (tests/real_asterisk.rs)
//! runs when the environment names a test PBX's CLI, and cargo reports it as
//! ignored (skipped) otherwise. A test cannot skip itself at run time, so the
//! choice is made here, as the `real_asterisk` cfg, when the variable is set.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(real_asterisk)");
    println!("cargo::rerun-if-env-changed=FEATPKG_REAL_ASTERISK_CMD");
    if std::env::var_os("FEATPKG_REAL_ASTERISK_CMD").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=real_asterisk");
    }
}
