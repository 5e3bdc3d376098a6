//! What MikoPBX needs inside the bundle: `module.json` with the module id
//! (`moduleUniqueID`), the PHP classes it loads under `Modules\<id>\…`, and
//! the settings page as a Volt view with its script and style under `public/`.

use crate::pbx::package::{PackagedFile, PbxPackaging, Shim, copies};

/// MikoPBX's side of the bundle archive.
#[derive(Debug, Clone, Copy)]
pub struct MikopbxPackaging;

/// `moduleUniqueID` rule of MikoPBX's REST API (`^[A-Za-z][A-Za-z0-9]*$`).
fn valid_module_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric())
}

/// The settings page's HTML as MikoPBX's view `App/Views/<id>/index.volt`:
/// MikoPBX renders it inside its admin layout as a Volt template.
fn settings_view(entry: &str, bytes: &[u8], module_id: &str) -> Result<PackagedFile, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| format!("{entry} is not UTF-8 text"))?;
    // Volt would run these as template code inside MikoPBX's page.
    if let Some(seq) = ["{{", "{%", "{#"].into_iter().find(|s| text.contains(s)) {
        return Err(format!(
            "{entry} contains {seq:?}: MikoPBX renders the page as a Volt template, which would run it as template code"
        ));
    }
    if !text.contains("data-pbx=\"\"") {
        return Err(format!(
            "{entry} must carry data-pbx=\"\" on its root element (the PBX's name is filled in there)"
        ));
    }
    let volt = text.replacen("data-pbx=\"\"", "data-pbx=\"mikopbx\"", 1);
    Ok(PackagedFile {
        path: format!("App/Views/{module_id}/index.volt"),
        bytes: volt.into_bytes(),
    })
}

impl PbxPackaging for MikopbxPackaging {
    fn manifest_file(&self) -> &'static str {
        "module.json"
    }

    /// The fields MikoPBX and MIKO's release pipeline require, and the module
    /// id rule. The id is `moduleUniqueID`.
    fn check_manifest(&self, text: &str, _version: &str) -> Result<String, String> {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        for field in [
            "moduleUniqueID",
            "version",
            "min_pbx_version",
            "developer",
            "support_email",
        ] {
            match json.get(field) {
                Some(serde_json::Value::String(v)) if !v.trim().is_empty() => {}
                _ => {
                    return Err(format!(
                        "{field} must be a non-empty string (MikoPBX refuses a module without it)"
                    ));
                }
            }
        }
        let id = json["moduleUniqueID"].as_str().unwrap_or_default();
        if !valid_module_id(id) {
            return Err(format!(
                "moduleUniqueID {id:?} must match ^[A-Za-z][A-Za-z0-9]*$ (MikoPBX's module id rule; it is also the PHP namespace Modules\\<id>)"
            ));
        }
        Ok(id.to_string())
    }

    /// MikoPBX loads `Modules\<id>\Setup\PbxExtensionSetup` and
    /// `Modules\<id>\Lib\<X>Conf` (X = the id without "Module").
    fn shims(&self, module_id: &str) -> Vec<Shim> {
        vec![
            Shim {
                path: "Setup/PbxExtensionSetup.php".into(),
                namespace: format!("namespace Modules\\{module_id}\\Setup;"),
            },
            Shim {
                path: format!("Lib/{}Conf.php", module_id.replace("Module", "")),
                namespace: format!("namespace Modules\\{module_id}\\Lib;"),
            },
        ]
    }

    /// MikoPBX renders `App/Views/<id>/index.volt` in its admin layout and
    /// serves `public/assets/{js,css}/`.
    fn place_ui_asset(
        &self,
        entry: &str,
        bytes: &[u8],
        module_id: &str,
    ) -> Result<Vec<PackagedFile>, String> {
        Ok(match entry {
            "ui-assets/settings.html" => vec![settings_view(entry, bytes, module_id)?],
            "ui-assets/settings.js" => copies(&["public/assets/js/featpkg-settings.js"], bytes),
            "ui-assets/settings.css" => copies(&["public/assets/css/featpkg-settings.css"], bytes),
            _ => Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::bundle::build;
    use crate::bundle::fixture::source;
    use crate::pbx::package::fixture::MODULE_JSON;

    #[test]
    fn module_json_is_checked() {
        let (d, opts) = source();
        let json = d.path().join("module-manifest/module.json");
        for (text, wanted) in [
            (
                MODULE_JSON.replace("ModuleDemo", "Module-Demo"),
                "moduleUniqueID \"Module-Demo\" must match ^[A-Za-z][A-Za-z0-9]*$",
            ),
            (
                MODULE_JSON.replace("ModuleDemo", "1Module"),
                "must match ^[A-Za-z][A-Za-z0-9]*$",
            ),
            (
                MODULE_JSON.replace(r#""support_email":"d@example.invalid""#, r#""x":1"#),
                "support_email must be a non-empty string",
            ),
            (
                MODULE_JSON.replace(r#""min_pbx_version":"2024.1.114","#, ""),
                "min_pbx_version must be a non-empty string",
            ),
            ("{".to_string(), "not valid JSON"),
        ] {
            std::fs::write(&json, text).unwrap();
            let err = build(&opts).unwrap_err().to_string();
            assert!(err.contains("module.json") && err.contains(wanted), "{err}");
        }
    }
}
