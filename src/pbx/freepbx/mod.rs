//! The FreePBX target (16 and 17, reference/freepbx.md).
//!
//! FreePBX regenerates most of `/etc/asterisk` on every "Apply Config"
//! (`fwconsole reload`), and `extensions.conf` is core's own copy, linked in; so
//! blocks go where FreePBX leaves the admin's additions alone (§2.2, §2.4):
//!
//! | feature file | on FreePBX |
//! |---|---|
//! | `extensions.conf` | `extensions_custom.conf`, which core's `extensions.conf` includes last |
//! | `pjsip.conf` (`[x](+type=endpoint)`) | `pjsip.endpoint_custom_post.conf`: the generated `pjsip.conf` includes it right after `pjsip.endpoint.conf`, so the endpoints it appends to exist (`pjsip_custom.conf` comes first, before any endpoint, and `pjsip.endpoint_custom.conf` sits at the top of `pjsip.endpoint.conf`; FreePBX/core `functions.inc/drivers/PJSip.class.php` `genConfig`) |
//! | `manager.conf` (AMI users) | `manager_custom.conf` |
//! | `modules.conf` | itself: FreePBX edits it in place, it is not generated |
//! | `/etc/crontab` | the asterisk user's crontab (`/var/spool/cron/crontabs/asterisk`), without the user column (§4.1) |
//!
//! FreePBX's web UI runs featpkg as asterisk, not root. The crontab spool is
//! then out of reach (`root:crontab 1730`), so featpkg changes asterisk's
//! crontab the way FreePBX's own `Cron` class does: through `crontab(1)`
//! ([`FileAccess::Crontab`]), which only ever changes the caller's own.
//!
//! Files featpkg owns (AGI programs, watchers, AMI credentials) are the
//! asterisk user's, like everything `fwconsole chown` manages (§4.3).
//! Paths come from `asterisk.conf` and the Asterisk CLI checks the reload, as
//! on plain Asterisk ([`AsteriskTarget`]); the reload itself is FreePBX's
//! (`fwconsole reload`), so that FreePBX's own state stays consistent.
//!
//! FreePBX 17 runs on Asterisk 21+, which has no `Macro()`: a block using it
//! (or `MacroExit`, `${MACRO_…}`) is refused (§2.1).
pub mod package;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    AsteriskTarget, PlaceError, ReloadError, ReloadRequest, Target, TargetError, TargetOptions,
    without_cron_user_column,
};
use crate::asterisk_config::{self, ConfigFile};
use crate::feature::{ConfigCheck, Location, PbxDir, RenderedContent, RenderedEdit, Written};
use crate::file_access::FileAccess;

/// The user FreePBX runs Asterisk as (AMPASTERISKUSER).
pub const ASTERISK_USER: &str = "asterisk";
/// Debian's crontab spool (FreePBX 17 runs on Debian 12 only).
pub const DEBIAN_CRON_SPOOL: &str = "/var/spool/cron/crontabs";
/// cronie's crontab spool (FreePBX 16 on SNG7 / RHEL-like systems).
pub const CRONIE_CRON_SPOOL: &str = "/var/spool/cron";
/// Where `fwconsole` lives on a FreePBX box (AMPSBIN); a web server's PATH may lack /usr/sbin.
pub const FWCONSOLE: &str = "/usr/sbin/fwconsole";
/// Where Debian's and cronie's `crontab(1)` live.
pub const CRONTAB_CMD: &str = "/usr/bin/crontab";

/// FreePBX's dialplan files that `include =>` contexts (never featpkg's to edit).
const FREEPBX_DIALPLAN: [&str; 3] = [
    "extensions_additional.conf",
    "extensions_override_freepbx.conf",
    "extensions_custom.conf",
];

/// A FreePBX box (or a tree shaped like one under `--root`).
#[derive(Debug, Clone)]
pub struct FreepbxTarget {
    /// Asterisk's directories (asterisk.conf) and its CLI, for the checks after reload.
    asterisk: AsteriskTarget,
    /// `fwconsole reload` (or `--reload-cmd`), split on whitespace.
    reload_cmd: Vec<String>,
    /// Runtime path of the asterisk user's crontab.
    crontab: String,
    /// How featpkg reaches that crontab: directly as root, through crontab(1) as asterisk.
    crontab_access: FileAccess,
    /// uid and gid of the asterisk user and group in the PBX's `/etc/passwd`
    /// and `/etc/group` (under `--root`); None when there is no such user.
    owner: Option<(u32, u32)>,
}

impl FreepbxTarget {
    /// Sets up the target from the command line's options.
    pub fn open(options: &TargetOptions) -> Result<FreepbxTarget, TargetError> {
        let asterisk = AsteriskTarget::open(
            &options.root,
            options.asterisk_conf.as_deref(),
            options.asterisk_cmd.as_deref(),
        )?;
        let reload_cmd = super::reload_command(options, || {
            let fwconsole = if Path::new(FWCONSOLE).is_file() {
                FWCONSOLE
            } else {
                "fwconsole"
            };
            vec![fwconsole.into(), "reload".into()]
        })?;
        let root = &options.root;
        let spool = if root.join(&DEBIAN_CRON_SPOOL[1..]).is_dir()
            || !root.join(&CRONIE_CRON_SPOOL[1..]).is_dir()
        {
            DEBIAN_CRON_SPOOL
        } else {
            CRONIE_CRON_SPOOL
        };
        Ok(FreepbxTarget {
            crontab: format!("{spool}/{ASTERISK_USER}"),
            crontab_access: crontab_access(options),
            owner: asterisk_ids(root),
            asterisk,
            reload_cmd,
        })
    }

    fn etc(&self) -> String {
        self.asterisk.runtime_dirs()[&PbxDir::Etc].clone()
    }

    /// Where a block for `location` goes on FreePBX, or None when FreePBX has no
    /// place for additions to that file.
    fn block_path(&self, location: &Location) -> Option<String> {
        let etc = self.etc();
        Some(match (location.dir, location.rel.as_str()) {
            (PbxDir::Etc, "extensions.conf") => format!("{etc}/extensions_custom.conf"),
            (PbxDir::Etc, "pjsip.conf") => format!("{etc}/pjsip.endpoint_custom_post.conf"),
            (PbxDir::Etc, "manager.conf") => format!("{etc}/manager_custom.conf"),
            (PbxDir::Etc, "modules.conf") => format!("{etc}/modules.conf"),
            (PbxDir::SysEtc, "crontab") => self.crontab.clone(),
            _ => return None,
        })
    }

    /// crontab(1) changes the crontab of whoever runs it: through it, featpkg
    /// must run as asterisk, or it would put the watcher in another user's crontab.
    fn check_crontab_is_ours(&self) -> Result<(), String> {
        let FileAccess::Crontab { program } = &self.crontab_access else {
            return Ok(());
        };
        // Unknown (no /proc): not asterisk, so refused.
        let uid = crate::identity::effective_ids().map_or(u32::MAX, |(uid, _)| uid);
        match self.owner {
            Some((asterisk, _)) if asterisk == uid => Ok(()),
            Some((asterisk, _)) => Err(format!(
                "featpkg runs as uid {uid}, not as {ASTERISK_USER} (uid {asterisk}): {} would change uid {uid}'s own crontab, not {}; run featpkg as root or as {ASTERISK_USER}",
                program.display(),
                self.crontab
            )),
            None => Ok(()),
        }
    }

    /// Refuses a `[x](+type=endpoint)` whose endpoint FreePBX does not define:
    /// the generated `pjsip.conf` with everything it includes is the baseline
    /// (the planner alone would only see `pjsip.endpoint_custom_post.conf`).
    fn check_endpoints(&self, edit_id: &str, body: &str) -> Result<(), String> {
        let shown = format!("featpkg block {edit_id}");
        let added = asterisk_config::parse(body.as_bytes(), &shown).map_err(|e| e.to_string())?;
        let etc = self.etc();
        let mut source = super::ConfigDir {
            target: self,
            dir: &etc,
            overlay: None,
        };
        let existing = asterisk_config::load_with_includes("pjsip.conf", &mut source)
            .map_err(|e| format!("{e} (FreePBX generates pjsip.conf: Apply Config first)"))?;
        let conflicts = asterisk_config::append_conflicts(&existing, &added);
        if conflicts.is_empty() {
            Ok(())
        } else {
            Err(conflicts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "))
        }
    }

    /// Refuses a context of ours that returns (`Return()`, reached only by
    /// `Gosub`) when FreePBX's dialplan `include =>`s it: every call falling
    /// into it would end at a `Return()` with nothing to return to.
    fn check_included_returns(&self, edit_id: &str, body: &str) -> Result<(), String> {
        let shown = format!("featpkg block {edit_id}");
        let added = asterisk_config::parse(body.as_bytes(), &shown).map_err(|e| e.to_string())?;
        let returning: Vec<&str> = added
            .sections
            .iter()
            .filter(|s| {
                s.entries.iter().any(|e| {
                    matches!(e.key.as_str(), "exten" | "same")
                        && e.value.to_ascii_lowercase().contains("return(")
                })
            })
            .map(|s| s.name.as_str())
            .collect();
        if returning.is_empty() {
            return Ok(());
        }
        let etc = self.etc();
        for name in FREEPBX_DIALPLAN {
            let runtime = format!("{etc}/{name}");
            let Ok(bytes) = std::fs::read(self.host_path(&runtime)) else {
                continue;
            };
            let Ok(parsed) = asterisk_config::parse(&bytes, &runtime) else {
                continue; // the planner reports a broken custom file; the rest is FreePBX's
            };
            for (section, entry) in includes(&parsed) {
                let included = entry.value.split([',', '|']).next().unwrap_or("").trim();
                if let Some(ours) = returning.iter().find(|c| c.eq_ignore_ascii_case(included)) {
                    return Err(format!(
                        "[{ours}] ends in Return() (a Gosub target), but {runtime}:{} includes it in [{section}]: calls reaching it through the include would hang up; give the feature a context only reached by Gosub",
                        entry.line
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `(section name, include entry)` of every `include =>` in a dialplan file.
fn includes(file: &ConfigFile) -> impl Iterator<Item = (&str, &asterisk_config::Entry)> {
    file.sections.iter().flat_map(|s| {
        s.entries
            .iter()
            .filter(|e| e.key.eq_ignore_ascii_case("include"))
            .map(move |e| (s.name.as_str(), e))
    })
}

/// The first use of an application or variable FreePBX 17 / Asterisk 21+ no
/// longer has (`Macro()`, `MacroExit`, `MacroIf`, `${MACRO_…}`), ignoring comments.
fn macro_use(body: &str) -> Option<(usize, String)> {
    for (i, line) in body.lines().enumerate() {
        let code = strip_comment(line).to_ascii_lowercase();
        let found = [
            "macro(",
            "macroexit",
            "macroif(",
            "macroexclusive(",
            "${macro_",
        ]
        .into_iter()
        .any(|needle| {
            code.match_indices(needle).any(|(at, _)| {
                // `Macro(` as an application, not the end of `SomeMacro(`.
                needle.starts_with('$')
                    || !code[..at]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        });
        if found {
            return Some((i + 1, line.trim().to_string()));
        }
    }
    None
}

/// A config line without its `;` comment (`\;` is a literal semicolon).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b';' && (i == 0 || bytes[i - 1] != b'\\') {
            return &line[..i];
        }
    }
    line
}

/// uid of the asterisk user and gid of the asterisk group (else that user's
/// primary group) in `<root>/etc/passwd` and `<root>/etc/group`.
/// Root writes the spool itself (and can give the file to asterisk). Anyone
/// else goes through crontab(1): on a real box (`/`) the system's, under
/// `--root` only one named with `--crontab-cmd` (a tree in a temp dir must
/// not change the crontab of whoever runs the tests).
fn crontab_access(options: &TargetOptions) -> FileAccess {
    if crate::identity::is_root() {
        return FileAccess::Direct;
    }
    match &options.crontab_cmd {
        Some(program) => FileAccess::Crontab {
            program: PathBuf::from(program),
        },
        None if options.root == Path::new("/") => FileAccess::Crontab {
            program: PathBuf::from(if Path::new(CRONTAB_CMD).is_file() {
                CRONTAB_CMD
            } else {
                "crontab"
            }),
        },
        None => FileAccess::Direct,
    }
}

fn asterisk_ids(root: &Path) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).ok()?;
    let (uid, primary_gid) = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 4 && fields[0] == ASTERISK_USER)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })?;
    let gid = std::fs::read_to_string(root.join("etc/group"))
        .ok()
        .and_then(|group| {
            group.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.len() >= 3 && fields[0] == ASTERISK_USER)
                    .then(|| fields[2].parse().ok())
                    .flatten()
            })
        })
        .unwrap_or(primary_gid);
    Some((uid, gid))
}

impl FreepbxTarget {
    /// Where a whole file featpkg owns goes: its own path, never a file
    /// FreePBX shares or generates.
    fn place_file(
        &self,
        location: Location,
        edit: RenderedEdit,
    ) -> Result<(String, RenderedEdit), String> {
        if self.block_path(&location).is_some() {
            return Err(format!(
                "{location}: on FreePBX this file is shared (or generated); featpkg only adds blocks to it"
            ));
        }
        if crate::identity::is_root() && self.owner.is_none() {
            return Err(format!(
                "no user {ASTERISK_USER} in {}: FreePBX runs Asterisk as {ASTERISK_USER}, and the files featpkg installs must be theirs",
                self.host_path("/etc/passwd").display()
            ));
        }
        Ok((self.asterisk.runtime_path(&location), edit))
    }

    /// Where a block goes: the file FreePBX takes additions to in place of the
    /// one the feature names, with the checks FreePBX's own files need.
    fn place_block(
        &self,
        location: Location,
        mut edit: RenderedEdit,
    ) -> Result<(String, RenderedEdit), String> {
        let Some(runtime_path) = self.block_path(&location) else {
            return Err(format!(
                "{location}: featpkg has no rule for where FreePBX takes additions to this file"
            ));
        };
        let RenderedContent::Block {
            body: Written::Full(body),
            section,
            check,
            comment,
            ..
        } = &mut edit.content
        else {
            unreachable!("place_block is given rendered blocks")
        };
        if *comment == ';'
            && let Some((line, text)) = macro_use(body)
        {
            return Err(format!(
                "line {line} of the block uses Macro ({text:?}): FreePBX 17 runs on Asterisk 21+, which has no app_macro; write it with Gosub/Return"
            ));
        }
        match (location.dir, location.rel.as_str()) {
            (PbxDir::Etc, "extensions.conf") => {
                self.check_included_returns(&edit.edit_id, body)?;
            }
            (PbxDir::Etc, "pjsip.conf") => {
                if *check == Some(ConfigCheck::PjsipAppend) {
                    self.check_endpoints(&edit.edit_id, body)?;
                }
                // Checked above against what pjsip.conf includes; the planner
                // would only see pjsip.endpoint_custom_post.conf.
                *check = None;
                *section = None;
            }
            (PbxDir::SysEtc, "crontab") => {
                if *comment != '#' {
                    return Err("a crontab block needs '#' markers".into());
                }
                *body = without_cron_user_column(body)?;
                self.check_crontab_owner()?;
            }
            _ => {}
        }
        Ok((runtime_path, edit))
    }

    /// The asterisk user's crontab can take featpkg's lines from this run.
    fn check_crontab_owner(&self) -> Result<(), String> {
        if (crate::identity::is_root() || self.crontab_access != FileAccess::Direct)
            && self.owner.is_none()
        {
            return Err(format!(
                "no user {ASTERISK_USER} in {}: the watcher runs from that user's crontab",
                self.host_path("/etc/passwd").display()
            ));
        }
        self.check_crontab_is_ours()
    }
}

impl Target for FreepbxTarget {
    fn name(&self) -> &'static str {
        "freepbx"
    }

    fn runtime_dirs(&self) -> BTreeMap<PbxDir, String> {
        self.asterisk.runtime_dirs()
    }

    fn runtime_path(&self, location: &Location) -> String {
        self.block_path(location)
            .unwrap_or_else(|| self.asterisk.runtime_path(location))
    }

    fn host_path(&self, runtime_path: &str) -> PathBuf {
        self.asterisk.host_path(runtime_path)
    }

    fn state_dir(&self) -> PathBuf {
        self.asterisk.state_dir()
    }

    fn state_owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    fn document(&self, runtime_path: &str) -> crate::change::Doc {
        crate::change::Doc::File {
            path: self.host_path(runtime_path),
            access: if runtime_path == self.crontab {
                self.crontab_access.clone()
            } else {
                FileAccess::Direct
            },
        }
    }

    fn place(
        &self,
        edits: Vec<(Location, RenderedEdit)>,
    ) -> Result<Vec<(String, RenderedEdit)>, PlaceError> {
        edits
            .into_iter()
            .map(|(location, edit)| {
                let id = edit.edit_id.clone();
                let refuse = move |message: String| PlaceError { edit: id, message };
                if edit.is_file() {
                    self.place_file(location, edit).map_err(refuse)
                } else {
                    self.place_block(location, edit).map_err(refuse)
                }
            })
            .collect()
    }

    fn owner_for_new(&self, runtime_path: &str) -> Option<(u32, u32)> {
        // Only root can give a file away; anyone else creates their own files
        // (the FreePBX web UI runs featpkg as asterisk already).
        if !crate::identity::is_root() {
            return None;
        }
        let ours = runtime_path == self.crontab
            || self.asterisk.runtime_dirs().iter().any(|(dir, path)| {
                *dir != PbxDir::SysEtc && runtime_path.starts_with(&format!("{path}/"))
            });
        if ours { self.owner } else { None }
    }

    fn create_missing(&self, runtime_path: &str) -> Option<u32> {
        // crontab(1) creates a user's crontab 0600; cron wants it owned by the user.
        (runtime_path == self.crontab).then_some(0o600)
    }

    fn reload(
        &self,
        request: &ReloadRequest,
        record_load: super::RecordLoad,
    ) -> Result<Vec<String>, ReloadError> {
        let mut said = Vec::new();
        if request.crontab && self.crontab_access != FileAccess::Direct {
            said.push(format!(
                "cron: crontab(1) installed {}, and told cron itself",
                self.crontab
            ));
        } else if request.crontab {
            // What crontab(1) does after writing: cron rereads a spool whose mtime changed.
            let spool = self
                .crontab
                .rsplit_once('/')
                .map(|(d, _)| d.to_string())
                .unwrap_or_default();
            let host = self.host_path(&spool);
            let touched = std::fs::File::open(&host)
                .and_then(|dir| dir.set_modified(std::time::SystemTime::now()));
            said.push(match touched {
                Ok(()) => format!("cron: {spool} touched, so cron rereads {}", self.crontab),
                Err(e) => format!(
                    "cron: could not touch {spool} ({e}); cron picks the change up when it next rescans"
                ),
            });
        }
        let asterisk_side = request.dialplan
            || request.pjsip
            || request.manager
            || request.modules_conf
            || !request.load_modules.is_empty()
            || !request.expect_contexts.is_empty();
        if !asterisk_side {
            return Ok(said);
        }
        let shown = self.reload_cmd.join(" ");
        let text = super::run_command(&self.reload_cmd, &[], &shown)?;
        said.push(match text.lines().next_back() {
            Some(last) => format!("{shown}: {last}"),
            None => shown,
        });
        // FreePBX reloaded Asterisk (`fwconsole reload` reloads the modules
        // Asterisk has; it loads none): modules new to it are loaded live and
        // the contexts checked through the CLI, as on plain Asterisk.
        said.extend(self.asterisk.reload(
            &ReloadRequest {
                load_modules: request.load_modules.clone(),
                expect_contexts: request.expect_contexts.clone(),
                ..ReloadRequest::default()
            },
            record_load,
        )?);
        Ok(said)
    }

    fn unload_module(&self, module: &str) -> Result<Option<String>, ReloadError> {
        // Loaded live through the CLI, so unloaded the same way.
        self.asterisk.unload_module(module)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_uses_are_found_outside_comments() {
        assert_eq!(
            macro_use("exten => s,1,NoOp()\n same => n,Macro(user-callerid)\n"),
            Some((2, "same => n,Macro(user-callerid)".into()))
        );
        assert!(macro_use(" same => n,MacroExit()\n").is_some());
        assert!(macro_use(" same => n,Set(X=${MACRO_EXTEN})\n").is_some());
        assert!(macro_use(" same => n,Gosub(sub,s,1) ; not Macro(x)\n").is_none());
        assert!(macro_use(" same => n,Set(MyMacro(=1)\n").is_none());
        assert!(macro_use(" same => n,Gosub(macro-dial-one,s,1)\n").is_none());
    }

    #[test]
    fn asterisk_ids_come_from_the_trees_passwd_and_group() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/bash\nasterisk:x:998:997::/home/asterisk:/bin/bash\n",
        )
        .unwrap();
        assert_eq!(asterisk_ids(dir.path()), Some((998, 997)));
        std::fs::write(dir.path().join("etc/group"), "asterisk:x:995:\n").unwrap();
        assert_eq!(asterisk_ids(dir.path()), Some((998, 995)));
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/bash\n",
        )
        .unwrap();
        assert_eq!(asterisk_ids(dir.path()), None);
    }
}
