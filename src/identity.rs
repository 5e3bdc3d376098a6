//! Who featpkg runs as. std has no getuid(); `/proc/self` belongs to the
//! process's effective uid and gid.

use std::os::unix::fs::MetadataExt;

/// The effective (uid, gid) of this process; `None` when `/proc` is not
/// mounted. Callers choose what an unknown identity means for them.
pub fn effective_ids() -> Option<(u32, u32)> {
    std::fs::metadata("/proc/self")
        .ok()
        .map(|m| (m.uid(), m.gid()))
}

/// True when featpkg runs as root (an unknown identity is not root).
pub fn is_root() -> bool {
    effective_ids().is_some_and(|(uid, _)| uid == 0)
}
