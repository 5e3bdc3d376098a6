//! What FreePBX needs inside the bundle: `module.xml` with the module's
//! identity (its rawname names the module directory and the BMO class), the
//! BMO class `<Rawname>.class.php`, and the settings page's script and style
//! under `assets/`, which FreePBX includes on the module's pages
//! (`page.featpkg.php` prints the HTML fragment from `ui-assets/` itself).

use crate::pbx::package::{PackagedFile, PbxPackaging, Shim, copies};

/// FreePBX's side of the bundle archive.
#[derive(Debug, Clone, Copy)]
pub struct FreepbxPackaging;

/// The text of the first `<tag>…</tag>` in `xml` (module.xml is flat and simple).
fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(xml[start..start + len].trim())
}

impl PbxPackaging for FreepbxPackaging {
    fn manifest_file(&self) -> &'static str {
        "module.xml"
    }

    /// The identity fields FreePBX reads; `<version>` must be the bundle's.
    /// The id is the rawname.
    fn check_manifest(&self, text: &str, version: &str) -> Result<String, String> {
        for tag in [
            "rawname",
            "name",
            "version",
            "publisher",
            "license",
            "category",
        ] {
            if xml_text(text, tag).is_none_or(str::is_empty) {
                return Err(format!("<{tag}> is missing or empty"));
            }
        }
        if xml_text(text, "version") != Some(version) {
            return Err(format!(
                "<version> must be the bundle version {version} (write %VERSION%)"
            ));
        }
        let rawname = xml_text(text, "rawname").unwrap_or_default();
        let mut bytes = rawname.bytes();
        if !(bytes.next().is_some_and(|b| b.is_ascii_lowercase())
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        {
            return Err(format!(
                "<rawname> {rawname:?} must be lower-case letters and digits (FreePBX names the module directory and BMO class after it)"
            ));
        }
        Ok(rawname.to_string())
    }

    /// FreePBX loads the BMO class from `<Rawname>.class.php`.
    fn shims(&self, rawname: &str) -> Vec<Shim> {
        let mut class = rawname.to_string();
        class[..1].make_ascii_uppercase();
        vec![Shim {
            path: format!("{class}.class.php"),
            namespace: "namespace FreePBX\\modules;".to_string(),
        }]
    }

    /// FreePBX includes the module's `assets/js/*.js` and `assets/css/*.css`.
    fn place_ui_asset(
        &self,
        entry: &str,
        bytes: &[u8],
        _rawname: &str,
    ) -> Result<Vec<PackagedFile>, String> {
        Ok(match entry {
            "ui-assets/settings.js" => copies(&["assets/js/featpkg-settings.js"], bytes),
            "ui-assets/settings.css" => copies(&["assets/css/featpkg-settings.css"], bytes),
            _ => Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::bundle::build;
    use crate::bundle::fixture::source;
    use crate::pbx::package::fixture::MODULE_XML;

    #[test]
    fn module_xml_is_checked() {
        let (d, opts) = source();
        let xml = d.path().join("module-manifest/module.xml");
        std::fs::write(&xml, MODULE_XML.replace("<publisher>d</publisher>", "")).unwrap();
        let err = build(&opts).unwrap_err().to_string();
        assert!(err.contains("module.xml: <publisher> is missing"), "{err}");
        std::fs::write(&xml, MODULE_XML.replace("%VERSION%", "9.9")).unwrap();
        let err = build(&opts).unwrap_err().to_string();
        assert!(err.contains("must be the bundle version 1.2.0"), "{err}");
    }
}
