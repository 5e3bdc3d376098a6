//! The bundle archive as a PBX receives it: reproducible, static binaries,
//! manifest covering every entry, PBX manifests at the root.

mod common;

use std::io::Read;
use std::process::Command;

use common::*;

fn entries(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).unwrap();
            (f.name().unwrap().to_string(), bytes)
        })
        .collect()
}

#[test]
fn two_builds_are_byte_identical() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let first = build_bundle(&repo(), a.path());
    let second = build_bundle(&repo(), b.path());
    assert_eq!(first.file_name(), second.file_name());
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap()
    );
}

#[test]
fn archive_layout_and_manifest() {
    let list = entries(&bundle());
    let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are sorted");
    for required in [
        "bundle.json",
        "module.json",
        "module.xml",
        "bin/x86_64-linux/featpkg",
        "bin/x86_64-linux/featpkg-operator-alert",
        "features/call-waiting/feature.json",
        "features/operator-alert/feature.json",
    ] {
        assert!(
            names.contains(&required),
            "{required} missing from {names:?}"
        );
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&list.iter().find(|(n, _)| n == "bundle.json").unwrap().1).unwrap();
    assert_eq!(manifest["name"], BUNDLE);
    assert_eq!(
        manifest["features"],
        serde_json::json!([
            "busy-callback",
            "call-waiting",
            "conference-guest",
            "operator-alert",
            "queue-failover"
        ])
    );
    let listed: Vec<&str> = manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    for (name, bytes) in &list {
        if name == "bundle.json" {
            continue;
        }
        let entry = manifest["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == name.as_str())
            .unwrap();
        assert_eq!(entry["sha256"], featpkg::hash::sha256_hex(bytes), "{name}");
        assert_eq!(entry["size"], bytes.len(), "{name}");
    }
    assert_eq!(
        listed.len(),
        list.len() - 1,
        "every entry but the manifest is listed"
    );
    let module_json: serde_json::Value =
        serde_json::from_slice(&list.iter().find(|(n, _)| n == "module.json").unwrap().1).unwrap();
    assert_eq!(
        module_json["version"], manifest["version"],
        "module.json carries the bundle version"
    );
    let module_xml = String::from_utf8(
        list.iter()
            .find(|(n, _)| n == "module.xml")
            .unwrap()
            .1
            .clone(),
    )
    .unwrap();
    assert!(
        module_xml.contains("<version>1.0.0</version>")
            && module_xml.contains("<rawname>featpkg</rawname>"),
        "{module_xml}"
    );
}

#[test]
fn shipped_binaries_are_static() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in entries(&bundle())
        .into_iter()
        // bin/<arch>-linux/: the binaries (bin/ also holds the MikoPBX reload shim)
        .filter(|(n, _)| n.starts_with("bin/") && n.contains("-linux/"))
    {
        let path = dir.path().join(name.replace('/', "_"));
        std::fs::write(&path, &bytes).unwrap();
        let out = Command::new("readelf")
            .arg("-l")
            .arg(&path)
            .output()
            .expect("readelf (binutils) is installed");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("LOAD"),
            "{name}: readelf shows no program headers:\n{text}"
        );
        assert!(
            !text.contains("INTERP"),
            "{name} has an ELF interpreter:\n{text}"
        );
    }
}
