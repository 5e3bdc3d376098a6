//! A demo bundle's sources for the tests: one feature, every PBX's module
//! manifest, fake static binaries for both architectures.

use super::BuildOptions;
use crate::pbx::package::fixture::write_manifests;

/// A minimal static-looking ELF64 header for `machine` with one PT_LOAD (or PT_INTERP).
pub(crate) fn elf_for(machine: u16, interp: bool) -> Vec<u8> {
    let mut b = vec![0u8; 64 + 56];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[18..20].copy_from_slice(&machine.to_le_bytes());
    b[32..40].copy_from_slice(&64u64.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&1u16.to_le_bytes());
    b[64..68].copy_from_slice(&(if interp { 3u32 } else { 1 }).to_le_bytes());
    b
}

/// [`elf_for`] x86_64.
pub(crate) fn elf(interp: bool) -> Vec<u8> {
    elf_for(62, interp)
}

/// The demo bundle's sources (bundle `demo` 1.2.0, feature `demo`) in a temp
/// dir, and the options that build them into its `dist/`.
pub(crate) fn source() -> (tempfile::TempDir, BuildOptions) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("module-manifest")).unwrap();
    std::fs::create_dir_all(root.join("packaging/features/demo")).unwrap();
    std::fs::create_dir_all(root.join("bin/x86")).unwrap();
    std::fs::create_dir_all(root.join("bin/arm")).unwrap();
    std::fs::write(
        root.join("module-manifest/bundle.json"),
        r#"{"name":"demo","version":"1.2.0","description":"d","binaries":["featpkg"]}"#,
    )
    .unwrap();
    write_manifests(&root.join("module-manifest"));
    std::fs::write(root.join("packaging/features/demo/feature.json"), "{}").unwrap();
    std::fs::write(
        root.join("packaging/features/demo/extensions.conf"),
        "[x]\n",
    )
    .unwrap();
    std::fs::write(root.join("bin/x86/featpkg"), elf(false)).unwrap();
    std::fs::write(root.join("bin/arm/featpkg"), elf_for(183, false)).unwrap();
    let opts = BuildOptions {
        source_dir: root.to_path_buf(),
        bin_dirs: [
            ("x86_64".to_string(), root.join("bin/x86")),
            ("aarch64".to_string(), root.join("bin/arm")),
        ]
        .into_iter()
        .collect(),
        out_dir: root.join("dist"),
        source_date_epoch: None,
    };
    (dir, opts)
}
