//! `featpkg schema --json`: what a settings page needs to draw a form for each
//! feature of a bundle — parameters with their types, defaults, limits, help,
//! `required` and `default_from` — and whether the PBX can run it at all.
//! The page only draws; every value is checked again by `install`.

use std::path::Path;

use serde::Serialize;

use super::Error;
use crate::bundle;
use crate::feature::FeatureDef;
use crate::feature::param::{ParamSpec, ParamType, QUEUE_STATUSES};
use crate::pbx::TargetKind;

/// The whole answer of `featpkg schema --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Schema {
    /// The bundle the features come from.
    pub bundle: BundleInfo,
    /// The target the `unsupported` reasons are for.
    pub target: &'static str,
    /// Every feature of the bundle, in the manifest's order.
    pub features: Vec<FeatureSchema>,
    /// The values a queue rule's `status` may take (app_queue's QUEUESTATUS).
    pub queue_statuses: Vec<&'static str>,
}

/// The bundle, from its manifest (`bundle.json`).
#[derive(Debug, Clone, Serialize)]
pub struct BundleInfo {
    /// The bundle's name: `featpkg-recipes`.
    pub name: String,
    /// The bundle's version: `1.0.0`.
    pub version: String,
    /// A sentence or two on the bundle, for the page's heading.
    pub description: String,
}

/// One feature: what it is, whether this PBX can run it, and its form fields.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureSchema {
    /// The feature's id: `busy-callback`.
    pub id: String,
    /// The feature's own version: `1.0.0`.
    pub version: String,
    /// One sentence on what the feature does.
    pub summary: String,
    /// Why this PBX cannot run the feature (`None`: it can).
    pub unsupported: Option<String>,
    /// Its parameters, in `feature.json`'s order.
    pub params: Vec<ParamSchema>,
}

/// One parameter, every field present (null when it does not apply), so a
/// page needs no knowledge of which types carry which fields.
#[derive(Debug, Clone, Serialize)]
pub struct ParamSchema {
    /// The parameter's name: `cancel_code`.
    pub name: String,
    /// The type's name as `feature.json` writes it: `service_code`, `integer`, `enum`.
    #[serde(rename = "type")]
    pub ty: &'static str,
    /// The default value (`*601`); empty: none.
    pub default: String,
    /// One sentence for the admin.
    pub help: String,
    /// The admin must give a value: there is no usable default.
    pub required: bool,
    /// The parameter whose value this one takes when left empty; `None`: no such fallback.
    pub default_from: Option<String>,
    /// The smallest value, for an `integer`; `None` for other types.
    pub min: Option<i64>,
    /// The largest value, for an `integer`; `None` for other types.
    pub max: Option<i64>,
    /// The values allowed, for an `enum`; `None` for other types.
    pub values: Option<Vec<String>>,
}

/// The type's name as written in `feature.json`.
fn type_name(ty: &ParamType) -> &'static str {
    match ty {
        ParamType::Extension => "extension",
        ParamType::ServiceCode => "service_code",
        ParamType::DigitPattern => "digit_pattern",
        ParamType::Context => "context",
        ParamType::Sound => "sound",
        ParamType::Word => "word",
        ParamType::VarName => "var_name",
        ParamType::Integer { .. } => "integer",
        ParamType::Enum { .. } => "enum",
        ParamType::EndpointList => "endpoint_list",
        ParamType::Destination => "destination",
        ParamType::QueueRules => "queue_rules",
    }
}

fn param_schema(spec: &ParamSpec) -> ParamSchema {
    let (min, max) = match spec.ty {
        ParamType::Integer { min, max } => (Some(min), Some(max)),
        _ => (None, None),
    };
    let values = match &spec.ty {
        ParamType::Enum { values } => Some(values.clone()),
        _ => None,
    };
    ParamSchema {
        name: spec.name.clone(),
        ty: type_name(&spec.ty),
        default: spec.default.clone(),
        help: spec.help.clone(),
        required: spec.required,
        default_from: spec.default_from.clone(),
        min,
        max,
        values,
    }
}

/// The schema of the bundle at `bundle_path` (archive or extracted module
/// directory), for `target`. The bundle is opened and checked as any input.
pub fn schema(kind: TargetKind, bundle_path: &Path) -> Result<Schema, Error> {
    let opened = bundle::open(bundle_path)?;
    let manifest = opened.manifest();
    let read = |p: &str| opened.file(p).map(|f| f.bytes.clone());
    let target = kind.name();
    let mut features = Vec::new();
    for id in &manifest.features {
        let def = FeatureDef::load(id, &read)?;
        features.push(FeatureSchema {
            unsupported: def.unsupported_on(target).map(str::to_string),
            params: def.params.iter().map(param_schema).collect(),
            id: def.id,
            version: def.version,
            summary: def.summary,
        });
    }
    Ok(Schema {
        bundle: BundleInfo {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            description: manifest.description.clone(),
        },
        target,
        features,
        queue_statuses: QUEUE_STATUSES.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_keeps_its_feature_json_name() {
        // The names a page switches on are the ones feature.json uses: a
        // serde round trip of each type gives the same "type" value.
        for ty in [
            ParamType::Extension,
            ParamType::ServiceCode,
            ParamType::DigitPattern,
            ParamType::Context,
            ParamType::Sound,
            ParamType::Word,
            ParamType::VarName,
            ParamType::Integer { min: 1, max: 2 },
            ParamType::Enum {
                values: vec!["a".into()],
            },
            ParamType::EndpointList,
            ParamType::Destination,
            ParamType::QueueRules,
        ] {
            let json = serde_json::to_value(&ty).unwrap();
            assert_eq!(json["type"], type_name(&ty), "{json}");
        }
    }

    #[test]
    fn integer_and_enum_carry_their_limits_and_values_others_nulls() {
        let int: ParamSpec = serde_json::from_str(
            r#"{"name":"ring","type":"integer","min":5,"max":120,"default":"30","help":"h"}"#,
        )
        .unwrap();
        let s = serde_json::to_value(param_schema(&int)).unwrap();
        assert_eq!(
            s,
            serde_json::json!({"name":"ring","type":"integer","default":"30","help":"h",
                "required":false,"default_from":null,"min":5,"max":120,"values":null})
        );
        let en: ParamSpec = serde_json::from_str(
            r#"{"name":"tech","type":"enum","values":["PJSIP","IAX2"],"default":"PJSIP","help":"h","required":true}"#,
        )
        .unwrap();
        let s = serde_json::to_value(param_schema(&en)).unwrap();
        assert_eq!(s["values"], serde_json::json!(["PJSIP", "IAX2"]));
        assert_eq!(s["min"], serde_json::Value::Null);
        assert_eq!(s["required"], true);
    }
}
