//! The fragment template language: `%{name}` substitutes a value,
//! `%{#each list}…%{item}…%{/each}` repeats a part once per item of a
//! comma-separated list — or of a JSON array of objects, whose fields are
//! `%{item.field}` — and `%{#if name=value}…%{/if}` keeps a part only when a
//! value is exactly that (an enum parameter choosing between two dialplans:
//! `agi_mode`); `#if` parts do not nest. Nothing else: fragments stay
//! readable as Asterisk config.
//! (`%{` was chosen because `{{`/`${` collide with dialplan `${VAR}` syntax.)

use std::collections::BTreeMap;

use super::param::list_items;

/// Renders `template` with `vars`. An unknown name or an unclosed tag is an error naming it.
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    render_into(template, vars, None, &mut out)?;
    Ok(out)
}

fn render_into(
    template: &str,
    vars: &BTreeMap<String, String>,
    item: Option<&str>,
    out: &mut String,
) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find("%{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed '%{{' near {:?}", truncate(&rest[start..])))?;
        let tag = &after[..end];
        rest = &after[end + 1..];
        if let Some(condition) = tag.strip_prefix("#if ") {
            let close = "%{/if}";
            let body_end = rest
                .find(close)
                .ok_or_else(|| format!("'%{{#if {condition}}}' has no '%{{/if}}'"))?;
            let body = &rest[..body_end];
            rest = &rest[body_end + close.len()..];
            if holds(condition, vars)? {
                render_into(body, vars, item, out)?;
            }
        } else if let Some(list_name) = tag.strip_prefix("#each ") {
            let close = "%{/each}";
            let body_end = rest
                .find(close)
                .ok_or_else(|| format!("'%{{#each {list_name}}}' has no '%{{/each}}'"))?;
            let body = &rest[..body_end];
            rest = &rest[body_end + close.len()..];
            let list = lookup(vars, list_name.trim())?;
            if list.trim_start().starts_with('[') {
                let items: Vec<BTreeMap<String, serde_json::Value>> = serde_json::from_str(&list)
                    .map_err(|e| {
                    format!("'%{{#each {list_name}}}': not a JSON array of objects: {e}")
                })?;
                for item in items {
                    let mut scoped = vars.clone();
                    for (k, v) in item {
                        let text = match v {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        };
                        scoped.insert(format!("item.{k}"), text);
                    }
                    render_into(body, &scoped, None, out)?;
                }
            } else {
                for value in list_items(&list) {
                    render_into(body, vars, Some(value), out)?;
                }
            }
        } else if tag == "item" {
            out.push_str(item.ok_or("'%{item}' used outside '%{#each}'")?);
        } else {
            out.push_str(&lookup(vars, tag.trim())?);
        }
    }
    out.push_str(rest);
    Ok(())
}

/// Whether `condition`, `name=value`, holds for `vars`; an unknown name or a
/// condition without `=` is an error naming it.
pub fn holds(condition: &str, vars: &BTreeMap<String, String>) -> Result<bool, String> {
    let (name, value) = condition
        .split_once('=')
        .ok_or_else(|| format!("condition {condition:?} is not name=value"))?;
    Ok(lookup(vars, name.trim())? == value.trim())
}

fn lookup(vars: &BTreeMap<String, String>, name: &str) -> Result<String, String> {
    vars.get(name)
        .cloned()
        .ok_or_else(|| format!("unknown template value '%{{{name}}}'"))
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(30) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitutes_and_keeps_dialplan_syntax() {
        let v = vars(&[("ctx", "hints")]);
        assert_eq!(
            render("${EXTENSION_STATE(${EXTEN}@%{ctx})}", &v).unwrap(),
            "${EXTENSION_STATE(${EXTEN}@hints)}"
        );
    }

    #[test]
    fn repeats_per_list_item() {
        let v = vars(&[("eps", "201, 202"), ("n", "3")]);
        let out = render("%{#each eps}[%{item}](+)\nx = %{n}\n%{/each}", &v).unwrap();
        assert_eq!(out, "[201](+)\nx = 3\n[202](+)\nx = 3\n");
        let empty = vars(&[("eps", "")]);
        assert_eq!(render("a%{#each eps}b%{/each}c", &empty).unwrap(), "ac");
    }

    #[test]
    fn repeats_per_json_object() {
        let v = vars(&[("rules", r#"[{"q":"1","d":"a,b,1"},{"q":2,"d":"c,d,1"}]"#)]);
        let out = render("%{#each rules}q=%{item.q} d=%{item.d}\n%{/each}", &v).unwrap();
        assert_eq!(out, "q=1 d=a,b,1\nq=2 d=c,d,1\n");
        assert!(
            render("%{#each rules}%{item.zzz}%{/each}", &v)
                .unwrap_err()
                .contains("item.zzz")
        );
    }

    #[test]
    fn keeps_a_part_only_when_its_condition_holds() {
        let template = "a\n%{#if mode=fast}f %{n}\n%{/if}%{#if mode=slow}s\n%{/if}z";
        let fast = vars(&[("mode", "fast"), ("n", "1")]);
        assert_eq!(render(template, &fast).unwrap(), "a\nf 1\nz");
        let slow = vars(&[("mode", "slow"), ("n", "1")]);
        assert_eq!(render(template, &slow).unwrap(), "a\ns\nz");
        assert!(render("%{#if mode=x}", &fast).unwrap_err().contains("/if"));
        assert!(
            render("%{#if nope=x}%{/if}", &fast)
                .unwrap_err()
                .contains("nope")
        );
        assert!(
            render("%{#if mode}%{/if}", &fast)
                .unwrap_err()
                .contains("name=value")
        );
    }

    #[test]
    fn unknown_names_are_errors() {
        let err = render("%{nope}", &BTreeMap::new()).unwrap_err();
        assert!(err.contains("%{nope}"), "{err}");
        assert!(render("%{a", &BTreeMap::new()).is_err());
        assert!(render("%{item}", &BTreeMap::new()).is_err());
    }
}
