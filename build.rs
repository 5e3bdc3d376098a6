//! Build script: only one job. The environment-dependent suites run when their
//! environment is there, and cargo reports them as ignored (skipped) otherwise.
//! A test cannot skip itself at run time, so the choice is made here, as a cfg:
//! `qemu_aarch64` (tests/cross_arch.rs) when qemu-user for aarch64 is on PATH.
//! The real-Asterisk suites always run: they build their Asterisk themselves
//! (`.ci/setup-asterisk`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(qemu_aarch64)");
    println!("cargo::rerun-if-env-changed=PATH");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let qemu = std::env::split_paths(&path)
        .flat_map(|dir| ["qemu-aarch64-static", "qemu-aarch64"].map(|name| dir.join(name)))
        .find(|file| file.is_file());
    if let Some(qemu) = qemu {
        // Seen again if it is removed; installing it later with the same PATH
        // needs `touch build.rs` (tests/cross_arch.rs says so when it skips).
        println!("cargo::rerun-if-changed={}", qemu.display());
        println!("cargo::rustc-cfg=qemu_aarch64");
    }
}
