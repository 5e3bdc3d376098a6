//! The MikoPBX target.
//!
//! MikoPBX regenerates `/etc/asterisk` and root's crontab from its SQLite
//! configuration database, so a block never goes into those files. Each kind
//! of change goes where it survives MikoPBX's regeneration (README, "MikoPBX:
//! rows or hooks"):
//! - dialplan, manager users and cron lines go into the text of the file's
//!   custom-file row (`m_CustomFiles`, mode `append`), which MikoPBX adds to
//!   the file every time it writes it, and an endpoint option goes into the
//!   employee's `m_Sip.manualattributes` (reference/mikopbx.md §3): the admin
//!   sees and can edit them where they look;
//! - `load =>` lines go into a file the module owns,
//!   [`MODULES_HOOK`] under the module's directory, whose text the module's
//!   `generateModulesConf()` hook returns. MikoPBX writes modules.conf only
//!   from its generator, and calls a module's hook only while the module is
//!   enabled: a custom-file row would outlive a disabled module, and a
//!   restored row in mode `none` left featpkg's lines on disk until the next
//!   regeneration dropped them. The modules themselves are loaded live
//!   (`module load`), so no feature needs an Asterisk restart here.
//!
//! Files featpkg owns (AGI programs, watchers, their AMI credentials, the hook
//! text) live in the module's directory, on the data disk, and the dialplan
//! calls them by absolute path (only PHP AGI files are linked into agi-bin
//! there, §1.5). Watchers sit at the top of the module's `bin/`, where
//! MikoPBX's module removal finds and stops them (`lsof bin/*`).
//! featpkg's state sits in the module's `db/`, which MikoPBX keeps across
//! module upgrades (the archive ships `db/.gitkeep`, without which the restore
//! of `db/` fails).
//!
//! Reloads go through MikoPBX's own mechanism: the module's PHP script
//! (`bin/featpkg-reload.php`) is called with what changed. MikoPBX's
//! `SIPConf::reload()` restarts Asterisk, ending every call, when the network
//! settings changed since Asterisk started; featpkg asks the script first
//! (`--would-restart pjsip`) and needs `--allow-restart` then.
pub mod package;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{
    AsteriskTarget, PlaceError, ReloadError, ReloadRequest, Target, TargetError, TargetOptions,
    without_cron_user_column,
};
use crate::feature::{ConfigCheck, Location, PbxDir, RenderedContent, RenderedEdit, Written};
pub mod row;
mod row_plan;

use row::{RowKey, RowRef};

/// Where MikoPBX extracts this module (reference/mikopbx.md §1.4).
pub const DEFAULT_MODULE_DIR: &str = "/storage/usbdisk1/mikopbx/custom_modules/ModuleFeatpkg";
/// MikoPBX's configuration database.
pub const DEFAULT_CONFIG_DB: &str = "/cf/conf/mikopbx.db";
/// Root's crontab, which MikoPBX regenerates (through its custom-file row).
pub const ROOT_CRONTAB: &str = "/var/spool/cron/crontabs/root";
/// Under the module's directory: the `load =>` lines the module's
/// `generateModulesConf()` hook hands to MikoPBX's modules.conf generator.
/// In `db/`, so it travels with featpkg's state across a module upgrade.
pub const MODULES_HOOK: &str = "db/hooks/generateModulesConf.conf";
/// Data files under this folder (watchers) sit at the top of the module's `bin/`.
const DATA_BIN: &str = "featpkg-bin/";

/// A MikoPBX box (or a tree shaped like one under `--root`).
#[derive(Debug, Clone)]
pub struct MikopbxTarget {
    /// Paths of Asterisk's own directories and the CLI used to check reloads.
    asterisk: AsteriskTarget,
    module_dir: String,
    config_db: String,
    reload_cmd: Vec<String>,
    /// MikoPBX's answer to `--would-restart pjsip`, asked once per run (before
    /// the change, for consent; again at the reload, to wait for the restart).
    pjsip_restart: std::sync::OnceLock<Option<String>>,
}

impl MikopbxTarget {
    /// Sets up the target from the command line's options.
    pub fn open(options: &TargetOptions) -> Result<MikopbxTarget, TargetError> {
        let asterisk = AsteriskTarget::open(
            &options.root,
            options.asterisk_conf.as_deref(),
            options.asterisk_cmd.as_deref(),
        )?;
        let invalid = |message: String| TargetError::Invalid {
            path: options.root.clone(),
            message,
        };
        let absolute = |name: &str, value: &str| -> Result<String, TargetError> {
            super::absolute_dir(value).ok_or_else(|| {
                invalid(format!(
                    "{name} {value:?} must be an absolute path without '..'"
                ))
            })
        };
        let module_dir = absolute(
            "--module-dir",
            options.module_dir.as_deref().unwrap_or(DEFAULT_MODULE_DIR),
        )?;
        let config_db = absolute(
            "--config-db",
            options.config_db.as_deref().unwrap_or(DEFAULT_CONFIG_DB),
        )?;
        let reload_cmd = super::reload_command(options, || {
            vec![
                "/usr/bin/php".into(),
                "-f".into(),
                format!("{module_dir}/bin/featpkg-reload.php"),
                // Without it PHP would read `--would-restart` as its own option.
                "--".into(),
            ]
        })?;
        let target = MikopbxTarget {
            asterisk,
            module_dir,
            config_db,
            reload_cmd,
            pjsip_restart: std::sync::OnceLock::new(),
        };
        let db = target.host_path(&target.config_db);
        if !db.is_file() {
            return Err(invalid(format!(
                "MikoPBX configuration database {} not found (point to it with --config-db)",
                db.display()
            )));
        }
        Ok(target)
    }

    fn etc(&self) -> String {
        self.asterisk.runtime_dirs()[&PbxDir::Etc].clone()
    }

    /// The hook text file (runtime path), see [`MODULES_HOOK`].
    fn modules_hook(&self) -> String {
        format!("{}/{MODULES_HOOK}", self.module_dir)
    }

    /// The custom-file row of a file MikoPBX generates.
    fn custom_file(filepath: &str) -> String {
        RowKey::CustomFile {
            filepath: filepath.to_string(),
        }
        .runtime_path()
    }
}

/// How long a restarted Asterisk may take to boot (MikoPBX's own safe script
/// waits as long for `core waitfullybooted`).
const BOOT_WAIT: Duration = Duration::from_secs(60);

impl MikopbxTarget {
    /// After MikoPBX restarted Asterisk: waits until Asterisk says it has fully
    /// booted, so the checks that follow talk to the new Asterisk.
    fn wait_fully_booted(&self) -> Result<String, ReloadError> {
        let started = Instant::now();
        loop {
            let last = match self.asterisk.run_cli("core waitfullybooted") {
                Ok(text) if text.contains("fully booted") => {
                    return Ok(format!(
                        "Asterisk restarted and fully booted after {:.1} s",
                        started.elapsed().as_secs_f64()
                    ));
                }
                Ok(text) => text,
                Err(e) => e.to_string(),
            };
            if started.elapsed() >= BOOT_WAIT {
                return Err(ReloadError::Failed {
                    command: "core waitfullybooted".into(),
                    output: format!(
                        "Asterisk did not come back within {} s of the restart: {last}",
                        BOOT_WAIT.as_secs()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl MikopbxTarget {
    /// Whether MikoPBX's `SIPConf::reload()` would restart Asterisk now, and why.
    fn ask_pjsip_restart(&self) -> Option<String> {
        // SIPConf::reload() restarts Asterisk instead of reloading it when the
        // network settings (topology hash) changed since Asterisk started
        // (SIPConf.php needAsteriskRestart): only MikoPBX can tell.
        let shown = format!("{} --would-restart pjsip", self.reload_cmd.join(" "));
        match super::run_command(&self.reload_cmd, &["--would-restart", "pjsip"], &shown) {
            Ok(answer) if answer.trim() == "no" => None,
            Ok(answer) => Some(match answer.trim().strip_prefix("yes:") {
                Some(why) => format!(
                    "applying an employee's endpoint options makes MikoPBX restart Asterisk now ({})",
                    why.trim()
                ),
                None => format!(
                    "featpkg could not tell whether MikoPBX restarts Asterisk to apply endpoint options (`{shown}` answered {:?})",
                    answer.trim()
                ),
            }),
            Err(e) => Some(format!(
                "featpkg could not tell whether MikoPBX restarts Asterisk to apply endpoint options ({e})"
            )),
        }
    }
}

/// A `module load` that failed on MikoPBX: most likely its Asterisk build
/// does not ship that module (MikoPBX loads only what its own list names).
fn missing_module_named(error: ReloadError) -> ReloadError {
    match error {
        ReloadError::Failed { command, output } if command.starts_with("module load ") => {
            let module = command.trim_start_matches("module load ").to_string();
            ReloadError::Failed {
                output: format!(
                    "{}; this MikoPBX's Asterisk could not load {module}, which the feature needs (is {module} in its modules directory, /offload/asterisk/modules?)",
                    output.trim()
                ),
                command,
            }
        }
        other => other,
    }
}

/// Splits a pjsip.conf block of `[ext](+type=endpoint)` sections into one body
/// per extension, each an `[endpoint]` section as MikoPBX's advanced options hold it.
fn endpoint_sections(edit_id: &str, body: &str) -> Result<Vec<(String, String)>, PlaceError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in body.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with(';') {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let (name, tail) = rest.split_once(']').unwrap_or((rest, ""));
            if !matches!(tail.trim(), "(+type=endpoint)" | "(+)") || name.is_empty() {
                return Err(PlaceError {
                    edit: edit_id.into(),
                    message: format!(
                        "section {trimmed:?}: on MikoPBX only additions to existing endpoints ([ext](+type=endpoint)) can be placed"
                    ),
                });
            }
            out.push((name.to_string(), "[endpoint]\n".to_string()));
            continue;
        }
        let Some((_, text)) = out.last_mut() else {
            return Err(PlaceError {
                edit: edit_id.into(),
                message: format!("option {trimmed:?} comes before any endpoint section"),
            });
        };
        text.push_str(trimmed);
        text.push('\n');
    }
    Ok(out)
}

impl MikopbxTarget {
    /// Paths that move on MikoPBX, as `(from, to)`: files featpkg owns in
    /// /etc/asterisk (AMI credentials) would not survive MikoPBX rewriting that
    /// directory, so they go to the module's etc/, and every block that names
    /// them follows; watchers likewise move from `bin/featpkg-bin/` to the top
    /// of `bin/`.
    fn moved_paths(&self, edits: &[(Location, RenderedEdit)]) -> Vec<(String, String)> {
        let etc = self.etc();
        let mut moved = Vec::new();
        for (location, edit) in edits {
            match (location.dir, &edit.content) {
                (PbxDir::Etc, RenderedContent::File { .. }) => moved.push((
                    format!("{etc}/{}", location.rel),
                    format!("{}/etc/{}", self.module_dir, location.rel),
                )),
                (PbxDir::Data, RenderedContent::File { .. })
                    if location.rel.starts_with(DATA_BIN) =>
                {
                    moved.push((
                        format!("{}/bin/{}", self.module_dir, location.rel),
                        self.runtime_path(location),
                    ))
                }
                _ => {}
            }
        }
        moved
    }

    /// Where a block goes on MikoPBX, which regenerates /etc/asterisk: the
    /// module's modules.conf hook, employees' endpoint options, or the custom
    /// file row of the file it names.
    fn place_block(
        &self,
        location: Location,
        mut edit: RenderedEdit,
        moved: &[(String, String)],
    ) -> Result<Vec<(String, RenderedEdit)>, String> {
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
        for (from, to) in moved {
            *body = body.replace(from.as_str(), to);
        }
        let runtime_path = match (location.dir, location.rel.as_str()) {
            (PbxDir::Etc, "modules.conf") => {
                // The hook's text is appended to MikoPBX's `[modules]`
                // section (autoload=no, no noload lines), so it needs no
                // section of its own and has nothing to collide with; a
                // module MikoPBX loads anyway is listed twice, which
                // Asterisk's loader merges (main/loader.c add_to_load_order).
                *section = None;
                *check = None;
                self.modules_hook()
            }
            (PbxDir::Etc, "pjsip.conf") if *check == Some(ConfigCheck::PjsipAppend) => {
                let body = body.clone();
                return endpoint_blocks(&edit, &body);
            }
            // In `append` mode MikoPBX adds the row's text after the file it
            // generates, i.e. inside its last section: a block for the end
            // of [modules] keeps its section, and the plan checks that
            // modules.conf's last section is that one (row_plan).
            (PbxDir::Etc, rel) => Self::custom_file(&format!("{}/{rel}", self.etc())),
            (PbxDir::SysEtc, "crontab") if *comment == '#' => {
                *body = without_cron_user_column(body)?;
                Self::custom_file(ROOT_CRONTAB)
            }
            _ => {
                return Err(format!(
                    "{location}: MikoPBX regenerates this file and featpkg has no custom-file rule for it"
                ));
            }
        };
        Ok(vec![(runtime_path, edit)])
    }
}

/// A block of endpoint options, split per employee: each goes into that
/// employee's advanced options (`m_Sip.manualattributes`).
fn endpoint_blocks(edit: &RenderedEdit, body: &str) -> Result<Vec<(String, RenderedEdit)>, String> {
    let sections = endpoint_sections(&edit.edit_id, body).map_err(|e| e.message)?;
    Ok(sections
        .into_iter()
        .map(|(extension, text)| {
            let runtime_path = RowKey::SipAttributes {
                extension: extension.clone(),
            }
            .runtime_path();
            let block = RenderedEdit {
                feature: edit.feature.clone(),
                edit_id: format!("{}/{extension}", edit.edit_id),
                content: RenderedContent::Block {
                    body: Written::Full(text),
                    section: None,
                    check: None,
                    comment: ';',
                    added_newline: false,
                },
            };
            (runtime_path, block)
        })
        .collect())
}

impl Target for MikopbxTarget {
    fn name(&self) -> &'static str {
        "mikopbx"
    }

    fn runtime_dirs(&self) -> BTreeMap<PbxDir, String> {
        let mut dirs = self.asterisk.runtime_dirs();
        // Programs featpkg owns run from the module's directory: agi-bin holds
        // only links to PHP files there, and bin/ is what MikoPBX stops on removal.
        dirs.insert(PbxDir::Agi, format!("{}/agi-bin", self.module_dir));
        dirs.insert(PbxDir::Data, format!("{}/bin", self.module_dir));
        dirs
    }

    fn runtime_path(&self, location: &Location) -> String {
        match (location.dir, location.rel.strip_prefix(DATA_BIN)) {
            (PbxDir::Data, Some(name)) => format!("{}/bin/{name}", self.module_dir),
            _ => format!("{}/{}", self.runtime_dirs()[&location.dir], location.rel),
        }
    }

    fn host_path(&self, runtime_path: &str) -> PathBuf {
        self.asterisk.host_path(runtime_path)
    }

    fn state_dir(&self) -> PathBuf {
        self.host_path(&format!("{}/db/featpkg", self.module_dir))
    }

    fn document(&self, runtime_path: &str) -> crate::change::Doc {
        match RowKey::parse(runtime_path) {
            Some(key) => crate::change::Doc::Row(RowRef {
                db: self.host_path(&self.config_db),
                key,
            }),
            None => crate::change::Doc::File {
                path: self.host_path(runtime_path),
                access: crate::file_access::FileAccess::Direct,
            },
        }
    }

    fn place(
        &self,
        edits: Vec<(Location, RenderedEdit)>,
    ) -> Result<Vec<(String, RenderedEdit)>, PlaceError> {
        let moved = self.moved_paths(&edits);
        let mut placed = Vec::new();
        for (location, edit) in edits {
            if edit.is_file() {
                let runtime_path = match location.dir {
                    PbxDir::Etc => format!("{}/etc/{}", self.module_dir, location.rel),
                    _ => self.runtime_path(&location),
                };
                placed.push((runtime_path, edit));
                continue;
            }
            let id = edit.edit_id.clone();
            let blocks = self
                .place_block(location, edit, &moved)
                .map_err(|message| PlaceError { edit: id, message })?;
            placed.extend(blocks);
        }
        Ok(placed)
    }

    fn not_applied(&self, runtime_path: &str, body: &[u8]) -> Option<String> {
        if runtime_path != self.modules_hook() {
            return None;
        }
        // MikoPBX wraps a module's hook text in "; ***** BEGIN BY <id>" /
        // "; ***** END BY <id>" (AsteriskConfigClass::confBlockWithComments);
        // while the module is disabled, or until MikoPBX regenerates the file,
        // featpkg's lines are not there, and the next Asterisk start goes
        // without the modules.
        let id = self.module_dir.rsplit('/').next().unwrap_or_default();
        let modules_conf = format!("{}/modules.conf", self.etc());
        let text = std::fs::read_to_string(self.host_path(&modules_conf)).unwrap_or_default();
        let (begin, end) = (
            format!("; ***** BEGIN BY {id}"),
            format!("; ***** END BY {id}"),
        );
        let ours: Vec<&str> = text
            .lines()
            .skip_while(|l| l.trim() != begin)
            .take_while(|l| l.trim() != end)
            .map(str::trim)
            .collect();
        let missing: Vec<&str> = std::str::from_utf8(body)
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("load") && !ours.contains(l))
            .collect();
        (!missing.is_empty()).then(|| {
            format!(
                "{modules_conf} lacks {} from the module's generateModulesConf() hook: the module {id} is disabled in MikoPBX, or MikoPBX has not written modules.conf since; enable the module (or run `featpkg install` again), else the next Asterisk start goes without these modules",
                missing.join(", ")
            )
        })
    }

    fn create_missing(&self, runtime_path: &str) -> Option<u32> {
        // The hook text is read by MikoPBX's PHP workers (user www) as well.
        (runtime_path == self.modules_hook()).then_some(0o644)
    }

    fn plan_row(
        &self,
        edits: crate::plan::DocEdits,
        row: RowRef,
        baseline: Option<&Option<row::RowState>>,
        out: &mut crate::plan::Plan,
    ) -> Result<(), crate::plan::PlanError> {
        row_plan::plan_row(edits, row, baseline, out)
    }

    fn restart_consent_hint(&self) -> &'static str {
        " (from the MikoPBX module page: put {\"allow_restart\": true} in db/featpkg-settings.json in the module's directory, then enable it again)"
    }

    fn restart_reason(&self, request: &ReloadRequest) -> Option<String> {
        if !request.pjsip {
            return None;
        }
        self.pjsip_restart
            .get_or_init(|| self.ask_pjsip_restart())
            .clone()
    }

    fn reload(
        &self,
        request: &ReloadRequest,
        record_load: super::RecordLoad,
    ) -> Result<Vec<String>, ReloadError> {
        // featpkg asked before the change (restart_reason) and has the admin's
        // consent if it restarts; asked again to know whether to wait for it.
        let restarts = self.restart_reason(request).is_some();
        if restarts {
            // The restart loads the regenerated modules.conf's modules: those
            // not running now are this change's, to unload if it is rolled
            // back. Asterisk unreachable: none is running.
            for module in &request.load_modules {
                let running = matches!(
                    self.asterisk.module_status(module),
                    Ok(super::asterisk::ModuleStatus::Running)
                );
                if !running {
                    record_load(module).map_err(|message| ReloadError::Journal {
                        module: module.clone(),
                        message,
                    })?;
                }
            }
        }
        // Runtime paths after a change, host paths after crash recovery.
        let hook = self.modules_hook();
        let hook_on_host = self.host_path(&hook);
        let hook_changed = request
            .changed
            .iter()
            .any(|p| *p == hook || Path::new(p) == hook_on_host);
        let mut words = Vec::new();
        // The order featpkg-reload.php keeps too: pjsip last, as it may restart.
        for (wanted, word) in [
            (request.dialplan, "dialplan"),
            (request.manager, "manager"),
            (request.crontab, "cron"),
            (hook_changed, "modules"),
            (request.pjsip, "pjsip"),
        ] {
            if wanted {
                words.push(word);
            }
        }
        let mut said = Vec::new();
        if !words.is_empty() {
            let shown = format!("{} {}", self.reload_cmd.join(" "), words.join(" "));
            let text = super::run_command(&self.reload_cmd, &words, &shown)?;
            said.push(if text.is_empty() {
                shown
            } else {
                format!("{shown}: {text}")
            });
        }
        if restarts {
            said.push(self.wait_fully_booted()?);
        }
        // MikoPBX wrote and reloaded the files; check the result with Asterisk's
        // CLI as on plain Asterisk (modules it has not loaded yet are loaded live).
        let check = ReloadRequest {
            load_modules: request.load_modules.clone(),
            expect_contexts: request.expect_contexts.clone(),
            ..ReloadRequest::default()
        };
        said.extend(
            self.asterisk
                .reload(&check, record_load)
                .map_err(missing_module_named)?,
        );
        Ok(said)
    }

    fn unload_module(&self, module: &str) -> Result<Option<String>, ReloadError> {
        // A module the restart (or the check after it) loaded is unloaded live:
        // putting a rolled-back change's modules.conf back needs no second
        // restart, and MikoPBX writes modules.conf from the restored rows at
        // its next one.
        self.asterisk.unload_module(module)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_a_pjsip_restart_loads_are_recorded_before_it_and_unloaded_live() {
        use crate::pbx::fake_cli;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("etc/asterisk")).unwrap();
        std::fs::write(d.join("etc/asterisk/asterisk.conf"), "").unwrap();
        let cli = fake_cli::write(d);
        std::fs::write(d.join("modules"), "func_extstate.so\n").unwrap();
        // MikoPBX's SIPConf::reload after a network change: it says so when
        // asked, then restarts Asterisk, which comes back with modules.conf's modules.
        let reload = d.join("fake-reload");
        std::fs::write(
            &reload,
            format!(
                "#!/bin/sh\necho \"$*\" >> {0}/reloads\nif [ \"$1\" = --would-restart ]; then echo 'yes: the network settings changed'; exit 0; fi\necho app_confbridge.so >> {0}/modules\n",
                d.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&reload, std::fs::Permissions::from_mode(0o755)).unwrap();
        let target = MikopbxTarget {
            asterisk: AsteriskTarget::open(d, None, Some(cli.to_str().unwrap())).unwrap(),
            module_dir: "/m".into(),
            config_db: "/db".into(),
            reload_cmd: vec![reload.display().to_string()],
            pjsip_restart: std::sync::OnceLock::new(),
        };
        let request = ReloadRequest {
            load_modules: vec!["func_extstate.so".into(), "app_confbridge.so".into()],
            pjsip: true,
            ..ReloadRequest::default()
        };
        assert_eq!(
            target.restart_reason(&request).as_deref(),
            Some(
                "applying an employee's endpoint options makes MikoPBX restart Asterisk now (the network settings changed)"
            )
        );
        let mut recorded = Vec::new();
        let said = target
            .reload(&request, &mut |m| {
                let reloads = std::fs::read_to_string(d.join("reloads")).unwrap();
                assert!(!reloads.contains("\npjsip"), "recorded after the restart");
                recorded.push(m.to_string());
                Ok(())
            })
            .unwrap();
        // func_extstate.so was running before: not this change's.
        assert_eq!(recorded, ["app_confbridge.so"]);
        // Asked once, then the reload itself.
        assert_eq!(
            std::fs::read_to_string(d.join("reloads")).unwrap(),
            "--would-restart pjsip\npjsip\n"
        );
        assert!(
            said.iter()
                .any(|l| l == "module app_confbridge.so: already loaded"),
            "{said:?}"
        );
        assert!(
            !fake_cli::log(d)
                .iter()
                .any(|l| l.starts_with("module load")),
            "the restart loaded them"
        );
        assert_eq!(
            target
                .unload_module("app_confbridge.so")
                .unwrap()
                .as_deref(),
            Some("module unload app_confbridge.so: Unloaded app_confbridge.so")
        );
        assert_eq!(fake_cli::modules(d), ["func_extstate.so"]);
    }

    #[test]
    fn endpoint_block_splits_per_extension() {
        let body = "[201](+type=endpoint)\ndevice_state_busy_at = 3\n[202](+type=endpoint)\ndevice_state_busy_at = 3\n";
        assert_eq!(
            endpoint_sections("cw/endpoints", body).unwrap(),
            vec![
                (
                    "201".into(),
                    "[endpoint]\ndevice_state_busy_at = 3\n".into()
                ),
                (
                    "202".into(),
                    "[endpoint]\ndevice_state_busy_at = 3\n".into()
                ),
            ]
        );
        let err = endpoint_sections("cw/endpoints", "[new-endpoint]\ntype = endpoint\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("only additions to existing endpoints"),
            "{err}"
        );
    }
}
