//! The architectures a bundle ships binaries for, and the ELF checks that a
//! binary is a static executable for its architecture.

/// One CPU architecture the bundle carries binaries for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arch {
    /// `std::env::consts::ARCH` of a featpkg built for it; the archive directory is
    /// `bin/<name>-linux/` (see `feature::binary_path`).
    pub name: &'static str,
    /// The Rust target the static binaries are built for.
    pub triple: &'static str,
    /// ELF `e_machine` of its executables.
    pub elf_machine: u16,
}

impl Arch {
    /// Archive directory of this architecture's binaries.
    pub fn bin_dir(&self) -> String {
        format!("bin/{}-linux", self.name)
    }
}

/// Every architecture a bundle ships by default (the PBXs featpkg serves run
/// on both).
pub const ARCHES: &[Arch] = &[
    Arch {
        name: "x86_64",
        triple: "x86_64-unknown-linux-musl",
        elf_machine: 62,
    },
    Arch {
        name: "aarch64",
        triple: "aarch64-unknown-linux-musl",
        elf_machine: 183,
    },
];

/// The architecture called `name` (`x86_64`, `aarch64`).
pub fn arch(name: &str) -> Option<&'static Arch> {
    ARCHES.iter().find(|a| a.name == name)
}

/// The architecture whose ELF machine number is `machine`.
pub fn arch_of_machine(machine: u16) -> Option<&'static Arch> {
    ARCHES.iter().find(|a| a.elf_machine == machine)
}

/// The names of [`ARCHES`], for messages (`x86_64, aarch64`).
pub fn known_arches() -> String {
    ARCHES.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
}

/// ELF `e_machine` of `bytes`, if it is an ELF file at all.
pub fn elf_machine(bytes: &[u8]) -> Option<u16> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return None;
    }
    Some(if bytes[5] == 2 {
        u16::from_be_bytes([bytes[18], bytes[19]])
    } else {
        u16::from_le_bytes([bytes[18], bytes[19]])
    })
}

/// Checks that `bytes` is a static ELF64 little-endian executable for `arch`
/// (right machine, no PT_INTERP program header).
pub fn check_static_elf(bytes: &[u8], arch: &Arch) -> Result<(), String> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("not a 64-bit little-endian ELF".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    let machine = u16_at(18);
    if machine != arch.elf_machine {
        let is = arch_of_machine(machine)
            .map_or_else(|| format!("machine {machine}"), |a| a.name.to_string());
        return Err(format!(
            "is built for {is}, not {} (it would go into {}/)",
            arch.name,
            arch.bin_dir()
        ));
    }
    let (phoff, phentsize, phnum) = (
        u64_at(32) as usize,
        u16_at(54) as usize,
        u16_at(56) as usize,
    );
    if phentsize < 56 {
        return Err("bad program header size".into());
    }
    for i in 0..phnum {
        let off = phoff.saturating_add(i.saturating_mul(phentsize));
        if off.saturating_add(4) > bytes.len() {
            return Err("program headers run past the end of the file".into());
        }
        if u32_at(off) == 3 {
            return Err("dynamically linked (has an ELF interpreter, PT_INTERP)".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::fixture::{elf, elf_for};

    #[test]
    fn static_elf_check() {
        let x86 = arch("x86_64").unwrap();
        let arm = arch("aarch64").unwrap();
        assert!(check_static_elf(&elf(false), x86).is_ok());
        assert!(check_static_elf(&elf_for(183, false), arm).is_ok());
        assert!(
            check_static_elf(&elf(true), x86)
                .unwrap_err()
                .contains("PT_INTERP")
        );
        assert_eq!(
            check_static_elf(&elf(false), arm).unwrap_err(),
            "is built for x86_64, not aarch64 (it would go into bin/aarch64-linux/)"
        );
        assert!(check_static_elf(b"#!/bin/sh\n", x86).is_err());
        assert_eq!(elf_machine(&elf_for(183, false)), Some(183));
        assert_eq!(elf_machine(b"#!/bin/sh\n"), None);
    }
}
