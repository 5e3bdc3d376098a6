//! Features: the declarative definitions shipped under `features/<id>/` in a bundle
//! (`feature.json` plus fragment templates), their parameters, and rendering them
//! into concrete edits for one set of parameter values.

pub mod param;
pub mod render;
pub mod template;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use param::{ParamSpec, ParamType};
pub use render::{
    PbxVars, RenderedContent, RenderedDestination, RenderedEdit, RenderedFeature, Written,
};

/// A directory of the PBX, as named in `asterisk.conf` `[directories]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PbxDir {
    /// astetcdir (`/etc/asterisk`)
    Etc,
    /// astagidir (`/var/lib/asterisk/agi-bin`)
    Agi,
    /// astvarlibdir (`/var/lib/asterisk`)
    VarLib,
    /// astdatadir (`/var/lib/asterisk`)
    Data,
    /// astspooldir (`/var/spool/asterisk`)
    Spool,
    /// astlogdir (`/var/log/asterisk`)
    Log,
    /// The system's `/etc` (for `/etc/crontab`): not an Asterisk directory.
    SysEtc,
}

impl PbxDir {
    /// All directories, with the name used in locations (`etc:modules.conf`) and templates (`%{dirs.etc}`).
    pub const ALL: [(PbxDir, &'static str); 7] = [
        (PbxDir::Etc, "etc"),
        (PbxDir::Agi, "agi"),
        (PbxDir::VarLib, "varlib"),
        (PbxDir::Data, "data"),
        (PbxDir::Spool, "spool"),
        (PbxDir::Log, "log"),
        (PbxDir::SysEtc, "sysetc"),
    ];

    /// The short name (`etc`, `agi`, …).
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(d, _)| *d == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }
}

/// Where an edit lands: a PBX directory and a relative path inside it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Location {
    /// The PBX directory it is under (`etc` in `etc:modules.conf`).
    pub dir: PbxDir,
    /// The path inside that directory, plain names separated by `/`:
    /// `modules.conf`, `featpkg-ami/busy-callback.conf`.
    pub rel: String,
}

impl Location {
    /// Parses `etc:modules.conf`. The relative part must be plain names (no `..`, no leading `/`).
    pub fn parse(text: &str) -> Result<Location, String> {
        let (dir_name, rel) = text
            .split_once(':')
            .ok_or_else(|| format!("location {text:?} must look like etc:file.conf"))?;
        let dir = PbxDir::ALL
            .iter()
            .find(|(_, n)| *n == dir_name)
            .map(|(d, _)| *d)
            .ok_or_else(|| format!("location {text:?}: unknown directory {dir_name:?}"))?;
        let ok = !rel.is_empty()
            && rel.split('/').all(|part| {
                !part.is_empty()
                    && part != ".."
                    && part != "."
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            });
        if !ok {
            return Err(format!(
                "location {text:?}: path must be plain names separated by '/'"
            ));
        }
        Ok(Location {
            dir,
            rel: rel.to_string(),
        })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.dir.name(), self.rel)
    }
}

/// How the planner checks a block against the config already on the PBX before writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfigCheck {
    /// extensions.conf: no (context, exten, priority) we add may exist already; `(+)` needs its section.
    Dialplan,
    /// modules.conf: no `load` of a module the admin `noload`s.
    Modules,
    /// pjsip.conf: every `[x](+type=endpoint)` needs an endpoint `[x]`.
    PjsipAppend,
    /// A file of named sections (manager.conf users): each section we add must be new.
    NewSections,
}

/// One contribution of a feature, as declared in `feature.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum EditDef {
    /// A marked block in a shared text file.
    Block {
        /// The edit's name within the feature (`dialplan`, `cron`); with the
        /// feature's id it makes the edit id `<feature>/<edit>`.
        id: String,
        /// The shared file, as a [`Location`]: `etc:extensions.conf`, `sysetc:crontab`.
        file: String,
        /// The fragment template's file name in `features/<id>/` (`extensions.conf`).
        template: String,
        /// Put the block at the end of this section (e.g. `modules`), else at the end of the file.
        #[serde(default)]
        section: Option<String>,
        /// How to check the block against the file's present config; `None`: not checked.
        #[serde(default)]
        check: Option<ConfigCheck>,
        /// `;` (Asterisk) or `#` (crontab) comment syntax for the markers.
        #[serde(default = "default_comment")]
        comment: String,
        /// Only when this holds: `name=value` of a parameter (`agi_mode=fastagi`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        when: Option<String>,
    },
    /// A whole file we own: one of the bundle's binaries, or a rendered template.
    File {
        /// The edit's name within the feature (`agi`, `watcher`); with the
        /// feature's id it makes the edit id `<feature>/<edit>`.
        id: String,
        /// Where the file goes, as a [`Location`]: `agi:featpkg-busy-callback`.
        file: String,
        /// The bundle's binary to install, by name (taken from `bin/<arch>-linux/<name>`,
        /// see [`binary_path`]); exactly one of `binary` and `template` is given.
        #[serde(default)]
        binary: Option<String>,
        /// The template in `features/<id>/` rendered into the file's content.
        #[serde(default)]
        template: Option<String>,
        /// Permission bits as octal text (`"0755"`); group and others may not write.
        mode: String,
        /// Only when this holds: `name=value` of a parameter (`agi_mode=fastagi`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        when: Option<String>,
    },
}

fn default_comment() -> String {
    ";".into()
}

impl EditDef {
    fn id(&self) -> &str {
        match self {
            EditDef::Block { id, .. } | EditDef::File { id, .. } => id,
        }
    }

    /// The condition the edit is made under (`agi_mode=fastagi`), if any.
    fn when(&self) -> Option<&str> {
        match self {
            EditDef::Block { when, .. } | EditDef::File { when, .. } => when.as_deref(),
        }
    }
}

/// A feature definition (`features/<id>/feature.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureDef {
    /// The feature's id, the same as its directory name: `busy-callback`.
    pub id: String,
    /// The feature's own version (`1.0.0`): kept in state with what is installed,
    /// and `%{version}` in its templates.
    pub version: String,
    /// One sentence for the admin on what the feature does.
    pub summary: String,
    /// The settings an admin can give (`--set <feature>.<param>=VALUE`).
    #[serde(default)]
    pub params: Vec<ParamSpec>,
    /// Asterisk modules the feature needs loaded (`module load` after install).
    #[serde(default)]
    pub modules: Vec<String>,
    /// Contexts that must exist once installed (checked with `dialplan show`); templates allowed.
    #[serde(default)]
    pub contexts: Vec<String>,
    /// Entry points a PBX may offer in its destination pickers (the drop-downs
    /// where an admin chooses where a call goes next).
    #[serde(default)]
    pub destinations: Vec<DestinationDef>,
    /// Targets the feature cannot work on, by name ([`crate::pbx::TargetKind::name`]),
    /// each with the reason shown to the admin: a default install skips it
    /// there, asking for it is refused. See [`FeatureDef::unsupported_on`].
    #[serde(default)]
    pub unsupported: BTreeMap<String, String>,
    /// What the feature adds to the PBX: marked blocks and whole files; ids unique.
    pub edits: Vec<EditDef>,
}

/// An entry point of the feature's dialplan that a PBX can offer as a
/// destination: `target` is `context,exten,priority`, templates allowed
/// (`%{noanswer_context},${EXTEN},1`: Asterisk fills in `${EXTEN}` when the
/// PBX's `Goto` runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationDef {
    /// The label a destination picker shows; templates allowed.
    pub description: String,
    /// `context,exten,priority`, templates allowed.
    pub target: String,
}

/// Errors in feature definitions or parameter values; each names the feature and the thing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FeatureError {
    /// A feature id the bundle does not have: the id asked for, and the
    /// bundle's feature ids joined with `, `.
    #[error("unknown feature {0:?} (this bundle has: {1})")]
    UnknownFeature(String, String),
    /// A parameter the feature does not declare.
    #[error("feature {feature}: unknown parameter {param:?} (known: {known})")]
    UnknownParam {
        /// The feature's id.
        feature: String,
        /// The parameter name given.
        param: String,
        /// The feature's parameter names, joined with `, `.
        known: String,
    },
    /// A value its parameter's type refuses.
    #[error("feature {feature}: parameter {param} = {value:?} refused: {rule}")]
    BadValue {
        /// The feature's id.
        feature: String,
        /// The parameter's name.
        param: String,
        /// The value given.
        value: String,
        /// The rule it breaks, for a person.
        rule: String,
    },
    /// A structured value (queue-failover's `rules`) refused; the message
    /// points into it with a JSON path instead of repeating the whole value.
    #[error("feature {feature}: parameter {param} refused: $.{feature}.{param}{rule}")]
    BadStructured {
        /// The feature's id.
        feature: String,
        /// The parameter's name.
        param: String,
        /// The rest of the JSON path and the rule: `[2].status: "BUSY" is not a QUEUESTATUS …`.
        rule: String,
    },
    /// A required parameter (no usable default) with no value given.
    #[error(
        "feature {feature}: parameter {param} is required (--set {feature}.{param}=VALUE or --params FILE.json)"
    )]
    Required {
        /// The feature's id.
        feature: String,
        /// The parameter's name.
        param: String,
    },
    /// A `--set` argument (quoted) not of the form `feature.param=value`.
    #[error("--set {0:?}: expected feature.param=value")]
    BadSetSyntax(String),
    /// A `--params` file that is not an object of features of parameters.
    #[error("parameters file {file}: {path}: {rule}")]
    ParamsFile {
        /// The file as given on the command line.
        file: String,
        /// The JSON path of the bad value: `$`, `$.queue-failover.rules`.
        path: String,
        /// What is wrong there.
        rule: String,
    },
    /// A feature definition (or one of its templates) that is broken: the
    /// bundle's fault, not the admin's.
    #[error("feature {feature}: definition invalid: {message}")]
    Definition {
        /// The feature's id.
        feature: String,
        /// What is wrong, naming the file or edit.
        message: String,
    },
}

/// Parameter values a user set explicitly, per feature (what State keeps across upgrades).
pub type UserParams = BTreeMap<String, BTreeMap<String, String>>;

/// Parses `--set feature.param=value` arguments into `UserParams`.
pub fn parse_sets(sets: &[String]) -> Result<UserParams, FeatureError> {
    let mut out = UserParams::new();
    for set in sets {
        let (key, value) = set
            .split_once('=')
            .ok_or_else(|| FeatureError::BadSetSyntax(set.clone()))?;
        let (feature, param) = key
            .split_once('.')
            .filter(|(f, p)| !f.is_empty() && !p.is_empty())
            .ok_or_else(|| FeatureError::BadSetSyntax(set.clone()))?;
        out.entry(feature.to_string())
            .or_default()
            .insert(param.to_string(), value.to_string());
    }
    Ok(out)
}

/// Reads a `--params FILE.json`: `{"<feature>": {"<param>": <value>, …}, …}`.
/// Strings are taken as they are, numbers and booleans as their text, arrays and
/// objects (structured parameters such as queue-failover's `rules`) as compact JSON.
/// Errors name the JSON path (`$.queue-failover.rules`).
pub fn parse_params_file(file: &str, bytes: &[u8]) -> Result<UserParams, FeatureError> {
    let err = |path: &str, rule: String| FeatureError::ParamsFile {
        file: file.to_string(),
        path: path.to_string(),
        rule,
    };
    let top: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| err("$", format!("not valid JSON: {e}")))?;
    let top = top
        .as_object()
        .ok_or_else(|| err("$", "must be an object of features".into()))?;
    let mut out = UserParams::new();
    for (feature, params) in top {
        let path = format!("$.{feature}");
        let params = params
            .as_object()
            .ok_or_else(|| err(&path, "must be an object of parameters".into()))?;
        for (name, value) in params {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => value.to_string(),
                serde_json::Value::Null => {
                    return Err(err(&format!("{path}.{name}"), "null is not a value".into()));
                }
            };
            out.entry(feature.clone())
                .or_default()
                .insert(name.clone(), text);
        }
    }
    Ok(out)
}

/// Reads a file of the bundle by its archive path (`features/<id>/feature.json`).
pub type BundleReader<'a> = &'a dyn Fn(&str) -> Option<Vec<u8>>;

impl FeatureDef {
    /// Loads and checks `features/<id>/feature.json` from the bundle.
    pub fn load(id: &str, read: BundleReader) -> Result<FeatureDef, FeatureError> {
        let bad = |message: String| FeatureError::Definition {
            feature: id.to_string(),
            message,
        };
        let path = format!("features/{id}/feature.json");
        let bytes = read(&path).ok_or_else(|| bad(format!("{path} is missing")))?;
        let def: FeatureDef =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("{path}: {e}")))?;
        if def.id != id {
            return Err(bad(format!("{path} declares id {:?}", def.id)));
        }
        // An empty default means "not set" (an optional list, destination or
        // code, or a required value); any other default must pass its own type.
        for spec in def.params.iter().filter(|p| !p.default.is_empty()) {
            spec.ty
                .check(&spec.default)
                .map_err(|e| bad(format!("default of {} is invalid: {}", spec.name, e.0)))?;
        }
        for spec in &def.params {
            if let Some(from) = &spec.default_from
                && !def
                    .params
                    .iter()
                    .any(|p| &p.name == from && p.default_from.is_none())
            {
                return Err(bad(format!(
                    "default_from of {} names {from:?}, which is not a parameter with its own default",
                    spec.name
                )));
            }
        }
        // Module names go to Asterisk's CLI and into the transaction's journal.
        for module in &def.modules {
            if !crate::txn::valid_module_name(module) || !module.ends_with(".so") {
                return Err(bad(format!(
                    "module {module:?} is not a module file name like func_extstate.so"
                )));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for edit in &def.edits {
            if !seen.insert(edit.id()) {
                return Err(bad(format!("edit id {:?} is used twice", edit.id())));
            }
            let param_named = |c: &str| {
                c.split_once('=')
                    .is_some_and(|(name, _)| def.params.iter().any(|p| p.name == name))
            };
            if let Some(when) = edit.when().filter(|c| !param_named(c)) {
                return Err(bad(format!(
                    "edit {}: when {when:?} is not <parameter>=<value>",
                    edit.id()
                )));
            }
        }
        Ok(def)
    }

    /// Why the feature cannot work on the target named `target`
    /// ([`crate::pbx::TargetKind::name`], [`crate::pbx::Target::name`]), if it cannot.
    pub fn unsupported_on(&self, target: &str) -> Option<&str> {
        self.unsupported.get(target).map(String::as_str)
    }

    /// Required parameters `user` does not give.
    pub fn missing_required(&self, user: &BTreeMap<String, String>) -> Vec<String> {
        self.params
            .iter()
            .filter(|p| p.required && user.get(&p.name).is_none_or(|v| v.is_empty()))
            .map(|p| p.name.clone())
            .collect()
    }

    /// Effective parameters: defaults, overridden by `user` (each checked against its type).
    pub fn resolve_params(
        &self,
        user: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, FeatureError> {
        for name in user.keys() {
            if !self.params.iter().any(|p| &p.name == name) {
                return Err(FeatureError::UnknownParam {
                    feature: self.id.clone(),
                    param: name.clone(),
                    known: self
                        .params
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        if let Some(param) = self.missing_required(user).into_iter().next() {
            return Err(FeatureError::Required {
                feature: self.id.clone(),
                param,
            });
        }
        let mut out = BTreeMap::new();
        for spec in &self.params {
            let value = user.get(&spec.name).unwrap_or(&spec.default);
            if let Some(value) = user.get(&spec.name) {
                spec.ty.check(value).map_err(|e| {
                    if spec.ty == ParamType::QueueRules {
                        FeatureError::BadStructured {
                            feature: self.id.clone(),
                            param: spec.name.clone(),
                            rule: e.0,
                        }
                    } else {
                        FeatureError::BadValue {
                            feature: self.id.clone(),
                            param: spec.name.clone(),
                            value: value.clone(),
                            rule: e.0,
                        }
                    }
                })?;
            }
            out.insert(spec.name.clone(), value.clone());
        }
        for spec in &self.params {
            if let Some(from) = &spec.default_from
                && out[&spec.name].is_empty()
            {
                let value = out[from].clone();
                out.insert(spec.name.clone(), value);
            }
        }
        Ok(out)
    }
}

/// Archive path of a bundled binary for the machine featpkg runs on.
pub fn binary_path(name: &str) -> String {
    format!("bin/{}-linux/{name}", std::env::consts::ARCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_parse() {
        let p = parse_sets(&["call-waiting.busy_at=4".into()]).unwrap();
        assert_eq!(p["call-waiting"]["busy_at"], "4");
        assert!(parse_sets(&["busy_at=4".into()]).is_err());
        assert!(parse_sets(&["a.b".into()]).is_err());
    }

    #[test]
    fn params_file() {
        let p = parse_params_file(
            "p.json",
            br#"{"queue-failover": {"rules": [{"queue": "1", "status": "TIMEOUT", "destination": "c,2,1"}], "context": "x"},
                 "call-waiting": {"busy_at": 4}}"#,
        )
        .unwrap();
        assert_eq!(p["call-waiting"]["busy_at"], "4");
        assert_eq!(
            p["queue-failover"]["rules"],
            r#"[{"destination":"c,2,1","queue":"1","status":"TIMEOUT"}]"#
        );
        let e = parse_params_file("p.json", br#"{"call-waiting": {"busy_at": null}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameters file p.json: $.call-waiting.busy_at: null is not a value"
        );
        let e = parse_params_file("p.json", br#"{"call-waiting": 3}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameters file p.json: $.call-waiting: must be an object of parameters"
        );
    }

    fn def_with(params: &str) -> Result<FeatureDef, FeatureError> {
        let json = format!(
            r#"{{"id": "f", "version": "1.0.0", "summary": "", "params": [{params}], "edits": []}}"#
        );
        FeatureDef::load("f", &|_| Some(json.clone().into_bytes()))
    }

    #[test]
    fn default_from_takes_the_other_parameter_unless_set() {
        let def = def_with(
            r#"{"name": "conference", "type": "extension", "default": "700", "help": ""},
               {"name": "dtmf", "type": "service_code", "default": "", "default_from": "conference", "help": ""}"#,
        )
        .unwrap();
        let none = BTreeMap::new();
        assert_eq!(def.resolve_params(&none).unwrap()["dtmf"], "700");
        let set = BTreeMap::from([("dtmf".to_string(), "1#".to_string())]);
        assert_eq!(def.resolve_params(&set).unwrap()["dtmf"], "1#");
        let e = def_with(
            r#"{"name": "dtmf", "type": "service_code", "default": "", "default_from": "nope", "help": ""}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains(r#"default_from of dtmf names "nope""#),
            "{e}"
        );
    }

    #[test]
    fn module_names_must_be_plain_module_files() {
        let json = |module: &str| {
            format!(
                r#"{{"id": "f", "version": "1.0.0", "summary": "", "modules": [{}], "edits": []}}"#,
                serde_json::to_string(module).unwrap()
            )
        };
        let load = |module: &str| {
            let text = json(module);
            FeatureDef::load("f", &|_| Some(text.as_bytes().to_vec()))
        };
        assert!(load("func_extstate.so").is_ok());
        assert!(load("app_featpkg-test_2.so").is_ok());
        for bad in [
            "func_extstate",
            "a.so b.so",
            "x.so\nload y.so",
            "../x.so",
            ".so",
            "",
            "-f x.so",
            "-f.so",
        ] {
            let e = load(bad).unwrap_err();
            assert!(
                e.to_string().contains("is not a module file name"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn locations() {
        let l = Location::parse("etc:modules.conf").unwrap();
        assert_eq!((l.dir, l.rel.as_str()), (PbxDir::Etc, "modules.conf"));
        assert!(Location::parse("etc:../passwd").is_err());
        assert!(Location::parse("etc:/x").is_err());
        assert!(Location::parse("root:x").is_err());
    }
}
