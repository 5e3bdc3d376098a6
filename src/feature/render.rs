//! Rendering a feature definition for one set of parameter values on one PBX:
//! its fragment templates become concrete edits (marked blocks and owned
//! files), its contexts and destinations concrete names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    BundleReader, ConfigCheck, EditDef, FeatureDef, FeatureError, Location, ParamType, PbxDir,
    binary_path, template,
};

/// What one edit puts on the PBX: rendered, with its full content; once
/// installed, as State keeps it (the content by its SHA-256, see [`Written`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderedContent {
    /// A marked block in a shared text file.
    Block {
        /// The text between the markers, ending in a newline.
        body: Written<String>,
        /// The section whose end the block goes at (`modules`); `None`: the end of the file.
        section: Option<String>,
        /// How to check the block against the file's present config; `None`: not checked.
        check: Option<ConfigCheck>,
        /// The comment character the markers start with: `;` (Asterisk) or `#` (crontab).
        comment: char,
        /// Once installed: featpkg added a line ending to the end of the
        /// document before this block (it did not end with one), so removing
        /// the block takes that line ending away again. Always false when rendered.
        added_newline: bool,
    },
    /// A whole file featpkg owns.
    File {
        /// Its full content: a bundled binary or a rendered template.
        bytes: Written<Vec<u8>>,
        /// Permission bits, e.g. `0o755`.
        mode: u32,
    },
}

/// The bytes an edit writes, as far as featpkg holds them: in full once
/// rendered; only their SHA-256 once installed (State keeps no copy, the bytes
/// are on the PBX; a different hash there now means a hand edit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written<T> {
    /// The content itself.
    Full(T),
    /// Lowercase hex SHA-256 of the content exactly as featpkg wrote it.
    Sha256(String),
}

impl<T: AsRef<[u8]>> Written<T> {
    /// The content's lowercase hex SHA-256.
    pub fn sha256(&self) -> String {
        match self {
            Written::Full(content) => crate::hash::sha256_hex(content.as_ref()),
            Written::Sha256(hash) => hash.clone(),
        }
    }
}

/// One edit of a feature: `edit_id` is `<feature>/<edit>`, unique within a
/// bundle. Where it goes travels beside it: its [`Location`] once rendered
/// (`RenderedFeature::edits`), the document's runtime path once the PBX placed
/// it (`Target::place`, the plan, State).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEdit {
    /// The feature's id: `busy-callback`.
    pub feature: String,
    /// `<feature>/<edit>`: `busy-callback/dialplan`.
    pub edit_id: String,
    /// What it puts there.
    pub content: RenderedContent,
}

impl RenderedEdit {
    /// True for a whole file featpkg owns, false for a marked block.
    pub fn is_file(&self) -> bool {
        matches!(self.content, RenderedContent::File { .. })
    }

    /// The comment character of a block's markers; `None` for a whole file.
    pub fn comment(&self) -> Option<char> {
        match self.content {
            RenderedContent::Block { comment, .. } => Some(comment),
            RenderedContent::File { .. } => None,
        }
    }

    /// Once installed: whether featpkg added a line ending before this block
    /// (always false for a whole file).
    pub fn added_newline(&self) -> bool {
        matches!(
            self.content,
            RenderedContent::Block {
                added_newline: true,
                ..
            }
        )
    }

    /// The SHA-256 of what it writes (a block's body, or the whole file).
    pub fn sha256(&self) -> String {
        match &self.content {
            RenderedContent::Block { body, .. } => body.sha256(),
            RenderedContent::File { bytes, .. } => bytes.sha256(),
        }
    }
}

/// What a PBX contributes to every template of a feature.
pub struct PbxVars<'a> {
    /// Runtime directories (`%{dirs.etc}`, `%{dirs.agi}`…).
    pub dirs: &'a BTreeMap<PbxDir, String>,
    /// Where its AMI listens (`%{ami.host}`, `%{ami.port}`): the watchers connect there.
    pub ami: &'a crate::ami_address::AmiAddress,
}

/// A feature rendered for one set of parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFeature {
    /// The feature's id: `busy-callback`.
    pub id: String,
    /// The feature's own version (`1.0.0`).
    pub version: String,
    /// Every parameter's effective value (defaults filled in).
    pub params: BTreeMap<String, String>,
    /// Asterisk modules it needs loaded: `res_manager_devicestate.so`.
    pub modules: Vec<String>,
    /// Contexts that must exist once installed, with parameters filled in.
    pub contexts: Vec<String>,
    /// Entry points a PBX may offer in its destination pickers.
    pub destinations: Vec<RenderedDestination>,
    /// Its edits, each with the file it lands in (`etc:extensions.conf`); a
    /// block that renders to blank text is left out.
    pub edits: Vec<(Location, RenderedEdit)>,
}

/// A destination rendered with a feature's parameters, as `featpkg destinations` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedDestination {
    /// `context,exten,priority`.
    pub destination: String,
    /// The label a destination picker shows.
    pub description: String,
    /// The feature's id.
    pub feature: String,
}

impl FeatureDef {
    /// Renders every edit with `params` (from `resolve_params`) and what the PBX
    /// contributes (`%{dirs.*}`, `%{ami.host}`, `%{ami.port}`).
    /// `secret` is this feature's generated secret on this PBX (e.g. its AMI user's
    /// password), available to fragments as `%{secret}`.
    pub fn render(
        &self,
        params: &BTreeMap<String, String>,
        pbx: &PbxVars,
        bundle_name: &str,
        secret: &str,
        read: BundleReader,
    ) -> Result<RenderedFeature, FeatureError> {
        let vars = self.render_vars(params, pbx, bundle_name, secret);
        let fragments = Fragments {
            feature: self,
            vars: &vars,
            read,
        };
        let mut edits = Vec::new();
        for edit in &self.edits {
            edits.extend(fragments.edit(edit)?);
        }
        let contexts = self
            .contexts
            .iter()
            .map(|c| template::render(c, &vars).map_err(|e| self.invalid(format!("contexts: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RenderedFeature {
            id: self.id.clone(),
            version: self.version.clone(),
            params: params.clone(),
            modules: self.modules.clone(),
            contexts,
            destinations: self.render_destinations(params, bundle_name)?,
            edits,
        })
    }

    /// Variables the fragments see: [`FeatureDef::template_vars`], the PBX's
    /// directories and AMI address, the secret, and `%{<param>.goto}` for each
    /// destination parameter (the dialplan application that goes there).
    fn render_vars(
        &self,
        params: &BTreeMap<String, String>,
        pbx: &PbxVars,
        bundle_name: &str,
        secret: &str,
    ) -> BTreeMap<String, String> {
        let mut vars = self.template_vars(params, bundle_name);
        for (dir, name) in PbxDir::ALL {
            if let Some(path) = pbx.dirs.get(&dir) {
                vars.insert(format!("dirs.{name}"), path.clone());
            }
        }
        vars.insert("ami.host".into(), pbx.ami.host.clone());
        vars.insert("ami.port".into(), pbx.ami.port.to_string());
        vars.insert("secret".into(), secret.into());
        for spec in &self.params {
            if spec.ty == ParamType::Destination {
                let value = &params[&spec.name];
                let app = if value.is_empty() {
                    "Hangup()".to_string()
                } else {
                    format!("Goto({value})")
                };
                vars.insert(format!("{}.goto", spec.name), app);
            }
        }
        vars
    }

    /// Variables every template of the feature sees: its parameters, `bundle`,
    /// `feature` and `version`.
    fn template_vars(
        &self,
        params: &BTreeMap<String, String>,
        bundle_name: &str,
    ) -> BTreeMap<String, String> {
        let mut vars = params.clone();
        vars.insert("bundle".into(), bundle_name.into());
        vars.insert("feature".into(), self.id.clone());
        vars.insert("version".into(), self.version.clone());
        vars
    }

    /// The feature's destinations for `params` (from `resolve_params`, or the
    /// effective values State keeps). Each must render to three non-empty
    /// comma-separated parts without blanks or `;`.
    pub fn render_destinations(
        &self,
        params: &BTreeMap<String, String>,
        bundle_name: &str,
    ) -> Result<Vec<RenderedDestination>, FeatureError> {
        let vars = self.template_vars(params, bundle_name);
        let mut out = Vec::new();
        for (i, def) in self.destinations.iter().enumerate() {
            let render = |text: &str| {
                template::render(text, &vars)
                    .map_err(|e| self.invalid(format!("destinations[{i}]: {e}")))
            };
            let destination = render(&def.target)?;
            let parts: Vec<&str> = destination.split(',').collect();
            if parts.len() != 3
                || parts
                    .iter()
                    .any(|p| p.is_empty() || p.contains(|c: char| c.is_whitespace() || c == ';'))
            {
                return Err(self.invalid(format!(
                    "destinations[{i}]: {destination:?} is not context,exten,priority"
                )));
            }
            out.push(RenderedDestination {
                destination,
                description: render(&def.description)?,
                feature: self.id.clone(),
            });
        }
        Ok(out)
    }

    /// The error for a definition that cannot be rendered.
    fn invalid(&self, message: String) -> FeatureError {
        FeatureError::Definition {
            feature: self.id.clone(),
            message,
        }
    }
}

/// The marker comment character for a definition's `comment` (`;` or `#`).
fn comment_char(comment: &str) -> Option<char> {
    match comment {
        ";" => Some(';'),
        "#" => Some('#'),
        _ => None,
    }
}

/// A feature's fragments as one render sees them: templates read from the
/// bundle (`features/<id>/<name>`) and filled in with `vars`.
struct Fragments<'a> {
    feature: &'a FeatureDef,
    vars: &'a BTreeMap<String, String>,
    read: BundleReader<'a>,
}

impl Fragments<'_> {
    /// The template `name` of the feature, rendered.
    fn template(&self, name: &str) -> Result<String, FeatureError> {
        let bad = |message: String| self.feature.invalid(message);
        let path = format!("features/{}/{name}", self.feature.id);
        let bytes = (self.read)(&path).ok_or_else(|| bad(format!("{path} is missing")))?;
        let text = String::from_utf8(bytes).map_err(|_| bad(format!("{path} is not UTF-8")))?;
        template::render(&text, self.vars).map_err(|e| bad(format!("{path}: {e}")))
    }

    /// One edit of the definition, rendered; `None` for a block that renders
    /// to nothing (e.g. no endpoints listed: nothing to add).
    fn edit(&self, edit: &EditDef) -> Result<Option<(Location, RenderedEdit)>, FeatureError> {
        if let Some(condition) = edit.when() {
            let holds = template::holds(condition, self.vars)
                .map_err(|e| self.feature.invalid(format!("edit {}: {e}", edit.id())))?;
            if !holds {
                return Ok(None);
            }
        }
        let (id, file, content) = match edit {
            EditDef::Block {
                id,
                file,
                template,
                section,
                check,
                comment,
                ..
            } => {
                let Some(content) = self.block(id, template, section, *check, comment)? else {
                    return Ok(None);
                };
                (id, file, content)
            }
            EditDef::File {
                id,
                file,
                binary,
                template,
                mode,
                ..
            } => (id, file, self.file(id, binary, template, mode)?),
        };
        let location =
            Location::parse(file).map_err(|e| self.feature.invalid(format!("edit {id}: {e}")))?;
        let edit = RenderedEdit {
            feature: self.feature.id.clone(),
            edit_id: format!("{}/{id}", self.feature.id),
            content,
        };
        Ok(Some((location, edit)))
    }

    /// A marked block's body (ending in a newline), or `None` when it is blank.
    fn block(
        &self,
        id: &str,
        template: &str,
        section: &Option<String>,
        check: Option<ConfigCheck>,
        comment: &str,
    ) -> Result<Option<RenderedContent>, FeatureError> {
        let body = self.template(template)?;
        if body.trim().is_empty() {
            return Ok(None);
        }
        let comment = comment_char(comment).ok_or_else(|| {
            self.feature
                .invalid(format!("edit {id}: comment {comment:?}"))
        })?;
        let body = if body.ends_with('\n') {
            body
        } else {
            body + "\n"
        };
        Ok(Some(RenderedContent::Block {
            body: Written::Full(body),
            section: section.clone(),
            check,
            comment,
            added_newline: false,
        }))
    }

    /// An owned file: one of the bundle's binaries or a rendered template, with
    /// its mode (octal, never writable by group or others).
    fn file(
        &self,
        id: &str,
        binary: &Option<String>,
        template: &Option<String>,
        mode: &str,
    ) -> Result<RenderedContent, FeatureError> {
        let bad = |message: String| self.feature.invalid(message);
        let mode = u32::from_str_radix(mode, 8)
            .ok()
            .filter(|m| *m <= 0o777 && m & 0o022 == 0)
            .ok_or_else(|| {
                bad(format!(
                    "edit {id}: mode {mode:?} must be octal without group/other write"
                ))
            })?;
        let bytes = match (binary, template) {
            (Some(name), None) => {
                let path = binary_path(name);
                (self.read)(&path).ok_or_else(|| bad(format!("{path} is missing")))?
            }
            (None, Some(t)) => self.template(t)?.into_bytes(),
            _ => return Err(bad(format!("edit {id}: give one of binary or template"))),
        };
        Ok(RenderedContent::File {
            bytes: Written::Full(bytes),
            mode,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_render_with_params() {
        let json = r#"{"id": "f", "version": "1.0.0", "summary": "",
            "params": [{"name": "ctx", "type": "context", "default": "my-ctx", "help": ""}],
            "destinations": [{"description": "F (%{ctx})", "target": "%{ctx},${EXTEN},1"}],
            "edits": []}"#;
        let def = FeatureDef::load("f", &|_| Some(json.as_bytes().to_vec())).unwrap();
        let params = def.resolve_params(&BTreeMap::new()).unwrap();
        assert_eq!(
            def.render_destinations(&params, "b").unwrap(),
            vec![RenderedDestination {
                destination: "my-ctx,${EXTEN},1".into(),
                description: "F (my-ctx)".into(),
                feature: "f".into(),
            }]
        );
        let broken = json.replace("%{ctx},${EXTEN},1", "%{ctx},1");
        let def = FeatureDef::load("f", &|_| Some(broken.as_bytes().to_vec())).unwrap();
        let e = def.render_destinations(&params, "b").unwrap_err();
        assert!(
            e.to_string().contains("is not context,exten,priority"),
            "{e}"
        );
    }
}
