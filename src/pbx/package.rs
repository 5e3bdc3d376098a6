//! What each PBX needs inside a bundle to take it as one of its modules: its
//! module manifest, the PHP shims it loads by the module id, and where it looks
//! for the settings page's files (reference/ui.md §3). `featpkg build` asks
//! every packaging in [`PACKAGINGS`]; the bundle itself knows no PBX.

use super::freepbx::package::FreepbxPackaging;
use super::mikopbx::package::MikopbxPackaging;

/// A PHP shim a PBX loads by the module id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shim {
    /// Its path under `packaging/shims/`, which is its path in the archive.
    pub path: String,
    /// The namespace declaration it must carry (`namespace …;`).
    pub namespace: String,
}

/// A file a PBX wants in the archive beside the bundle's own entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagedFile {
    /// Its archive path.
    pub path: String,
    /// Its content.
    pub bytes: Vec<u8>,
}

/// One PBX's side of the bundle archive.
pub trait PbxPackaging {
    /// File name of the PBX's module manifest, in the sources'
    /// `module-manifest/` and at the archive root.
    fn manifest_file(&self) -> &'static str;

    /// Checks the module manifest's text (`%VERSION%` already replaced by the
    /// bundle's `version`) for the fields the PBX requires. Returns the
    /// module's id on this PBX, which its shims and page files are named after.
    fn check_manifest(&self, text: &str, version: &str) -> Result<String, String>;

    /// The shims the PBX loads for the module `module_id`.
    fn shims(&self, module_id: &str) -> Vec<Shim>;

    /// The files the settings page's file `entry` (`ui-assets/<name>`, with
    /// `bytes`) gives on this PBX besides itself; an error says why the PBX
    /// cannot take it.
    fn place_ui_asset(
        &self,
        entry: &str,
        bytes: &[u8],
        module_id: &str,
    ) -> Result<Vec<PackagedFile>, String>;
}

/// Every PBX a bundle is packaged for, in the order their manifests are checked.
pub const PACKAGINGS: &[&dyn PbxPackaging] = &[&MikopbxPackaging, &FreepbxPackaging];

/// `bytes` at each of `paths`.
pub(crate) fn copies(paths: &[&str], bytes: &[u8]) -> Vec<PackagedFile> {
    paths
        .iter()
        .map(|path| PackagedFile {
            path: path.to_string(),
            bytes: bytes.to_vec(),
        })
        .collect()
}

/// A demo module's manifests and shims for every PBX, for the build tests.
#[cfg(test)]
pub(crate) mod fixture {
    use std::path::Path;

    /// MikoPBX's manifest of the demo module (id `ModuleDemo`).
    pub const MODULE_JSON: &str = r#"{"moduleUniqueID":"ModuleDemo","version":"%VERSION%","min_pbx_version":"2024.1.114","developer":"d","support_email":"d@example.invalid"}"#;
    /// FreePBX's manifest of the demo module (rawname `demo`).
    pub const MODULE_XML: &str = "<module><rawname>demo</rawname><name>Demo</name><version>%VERSION%</version><publisher>d</publisher><license>MIT</license><category>Applications</category></module>";

    /// Every PBX's manifest file name and demo text.
    pub const MANIFESTS: [(&str, &str); 2] =
        [("module.json", MODULE_JSON), ("module.xml", MODULE_XML)];

    /// Writes every PBX's demo manifest into `dir` (`module-manifest/`).
    pub fn write_manifests(dir: &Path) {
        for (file, text) in MANIFESTS {
            std::fs::write(dir.join(file), text).unwrap();
        }
    }

    /// Adds the three PHP shims the module ids require to `root`'s `packaging/shims/`.
    pub fn add_shims(root: &Path) {
        let shims = root.join("packaging/shims");
        std::fs::create_dir_all(shims.join("Setup")).unwrap();
        std::fs::create_dir_all(shims.join("Lib")).unwrap();
        std::fs::write(
            shims.join("Setup/PbxExtensionSetup.php"),
            "<?php\nnamespace Modules\\ModuleDemo\\Setup;\n",
        )
        .unwrap();
        std::fs::write(
            shims.join("Lib/DemoConf.php"),
            "<?php\nnamespace Modules\\ModuleDemo\\Lib;\n",
        )
        .unwrap();
        std::fs::write(
            shims.join("Demo.class.php"),
            "<?php\nnamespace FreePBX\\modules;\n",
        )
        .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::add_shims;
    use crate::bundle::fixture::source;
    use crate::bundle::{build, open};

    #[test]
    fn shims_go_to_the_root_and_must_match_the_module_ids() {
        let (d, opts) = source();
        add_shims(d.path());
        std::fs::create_dir_all(d.path().join("packaging/shims/bin")).unwrap();
        std::fs::write(d.path().join("packaging/shims/bin/reload.php"), "<?php\n").unwrap();
        let bundle = open(&build(&opts).unwrap()).unwrap();
        for entry in [
            "Setup/PbxExtensionSetup.php",
            "Lib/DemoConf.php",
            "Demo.class.php",
            "bin/reload.php",
        ] {
            assert_eq!(bundle.file(entry).unwrap().mode, 0o644, "{entry}");
        }
        std::fs::write(
            d.path().join("packaging/shims/Lib/DemoConf.php"),
            "<?php\nnamespace Modules\\ModuleOther\\Lib;\n",
        )
        .unwrap();
        let err = build(&opts).unwrap_err().to_string();
        assert!(
            err.contains("DemoConf.php: must declare `namespace Modules\\ModuleDemo\\Lib;`"),
            "{err}"
        );
        std::fs::remove_file(d.path().join("packaging/shims/Lib/DemoConf.php")).unwrap();
        let err = build(&opts).unwrap_err().to_string();
        assert!(err.contains("Lib/DemoConf.php: missing"), "{err}");
        add_shims(d.path());
        std::fs::write(d.path().join("packaging/shims/module.json"), "{}").unwrap();
        let err = build(&opts).unwrap_err().to_string();
        assert!(
            err.contains("two sources give the archive entry \"module.json\""),
            "{err}"
        );
    }

    #[test]
    fn the_settings_page_goes_where_each_pbx_looks_for_it() {
        let (d, opts) = source();
        let ui = d.path().join("ui-assets");
        std::fs::create_dir_all(&ui).unwrap();
        std::fs::write(
            ui.join("settings.html"),
            "<div id=\"featpkg-settings\" data-pbx=\"\">x</div>\n",
        )
        .unwrap();
        std::fs::write(ui.join("settings.js"), "var a = 1;\n").unwrap();
        std::fs::write(ui.join("settings.css"), "#featpkg-settings {}\n").unwrap();
        let bundle = open(&build(&opts).unwrap()).unwrap();
        let text = |p: &str| String::from_utf8(bundle.file(p).unwrap().bytes.clone()).unwrap();
        assert_eq!(
            text("App/Views/ModuleDemo/index.volt"),
            "<div id=\"featpkg-settings\" data-pbx=\"mikopbx\">x</div>\n"
        );
        assert_eq!(
            text("ui-assets/settings.html"),
            "<div id=\"featpkg-settings\" data-pbx=\"\">x</div>\n"
        );
        for js in [
            "public/assets/js/featpkg-settings.js",
            "assets/js/featpkg-settings.js",
        ] {
            assert_eq!(text(js), "var a = 1;\n", "{js}");
        }
        for css in [
            "public/assets/css/featpkg-settings.css",
            "assets/css/featpkg-settings.css",
        ] {
            assert_eq!(text(css), "#featpkg-settings {}\n", "{css}");
        }
        // Volt would run template code in MikoPBX's page.
        std::fs::write(
            ui.join("settings.html"),
            "<div data-pbx=\"\">{{ secret }}</div>\n",
        )
        .unwrap();
        let err = build(&opts).unwrap_err().to_string();
        assert!(
            err.contains("ui-assets/settings.html contains \"{{\""),
            "{err}"
        );
        std::fs::write(ui.join("settings.html"), "<div>x</div>\n").unwrap();
        let err = build(&opts).unwrap_err().to_string();
        assert!(err.contains("must carry data-pbx=\"\""), "{err}");
    }
}
