//! Planning blocks in database rows (MikoPBX's custom files and employee
//! options, see [`crate::row`]): the same block rules as for files, applied to
//! the text a row holds, plus the row's own columns and its exact restore.

use super::{
    BlockId, DocChange, DocEdits, EditKind, FileState, InstalledEdit, Plan, PlanError,
    RenderedContent, RenderedEdit, Target, comment_of, marker, plan_blocks, style,
};
use crate::pbx::mikopbx::row::{self, RowKey, RowRef, RowState};

/// Blocks in the text a database row holds. The row is put back exactly as it
/// was before featpkg first touched it (`baseline`: content, mode and the other
/// columns, or its absence) once none of our blocks remain and the rest of its
/// text is what it was then; otherwise the admin's text stays, re-encoded.
///
/// A custom file's text is checked and placed as Asterisk will read it: after
/// the text MikoPBX generates (see [`row::generated_prefix`]), so the checks see
/// the generated configuration too and a block for `[modules]` lands in it.
/// Messages name the row (`m_CustomFiles:/etc/asterisk/extensions.conf`), which
/// is what the admin edits, not the file MikoPBX writes from it.
#[allow(clippy::too_many_arguments)]
pub(super) fn plan_row(
    target: &dyn Target,
    bundle: &str,
    runtime_path: &str,
    row: RowRef,
    baseline: Option<&Option<RowState>>,
    olds: &[&InstalledEdit],
    news: &[&RenderedEdit],
    force: bool,
    out: &mut Plan,
) -> Result<(), PlanError> {
    if news
        .iter()
        .any(|n| matches!(n.content, RenderedContent::File { .. }))
        || olds.iter().any(|o| o.kind == EditKind::File)
    {
        return Err(PlanError::Config {
            path: runtime_path.into(),
            message: "a whole file cannot go into a database row".into(),
        });
    }
    let current = row::read(&row)?;
    let text = row::decode_content(current.as_ref().and_then(|c| c.content.as_deref()));
    let mode = current.as_ref().and_then(|c| c.mode.clone());
    let comment = comment_of(olds, news);
    // Include checks read the PBX's files beside the one the row customises.
    let check_path = match &row.key {
        RowKey::CustomFile { filepath } => filepath.clone(),
        RowKey::SipAttributes { .. } => runtime_path.to_string(),
    };
    let named = |e: PlanError| -> PlanError {
        let fix = |path: String| {
            if path == check_path {
                runtime_path.to_string()
            } else {
                path
            }
        };
        match e {
            PlanError::Markers { path, message } => PlanError::Markers {
                path: fix(path),
                message,
            },
            PlanError::ModifiedBlock { path, edit, action } => PlanError::ModifiedBlock {
                path: fix(path),
                edit,
                action,
            },
            PlanError::MissingBlock { path, edit } => PlanError::MissingBlock {
                path: fix(path),
                edit,
            },
            PlanError::MissingSection {
                path,
                section,
                edit,
            } => PlanError::MissingSection {
                path: fix(path),
                section,
                edit,
            },
            PlanError::UnknownBlock { path, edit } => PlanError::UnknownBlock {
                path: fix(path),
                edit,
            },
            PlanError::Config { path, message } => PlanError::Config {
                path: fix(path),
                message,
            },
            other => other,
        }
    };
    // Marker problems are reported with the row's own line numbers.
    marker::scan(&text, style(comment)).map_err(|e| PlanError::Markers {
        path: runtime_path.into(),
        message: e.to_string(),
    })?;
    let (prefix, news): (Vec<u8>, Vec<RenderedEdit>) = match &row.key {
        RowKey::CustomFile { filepath } => {
            if !news.is_empty() && mode.as_deref() == Some("script") {
                // Refused before the checks, which would read the script as config.
                row_with_text(runtime_path, &row.key, current.as_ref(), None, &text, true)?;
            }
            // MikoPBX ignores the text of a row in mode `none`; the `append`
            // our blocks need would bring that text back to life.
            let others =
                marker::without_blocks_of(&text, style(comment), bundle).unwrap_or_default();
            if !news.is_empty()
                && mode.as_deref() == Some("none")
                && !others.iter().all(u8::is_ascii_whitespace)
            {
                return Err(PlanError::Config {
                    path: runtime_path.into(),
                    message: "the custom file is in mode `none`, so MikoPBX ignores the text it holds; featpkg would switch it to `append` for its blocks, and that text would take effect too: delete the text or choose the mode yourself first".into(),
                });
            }
            let section = news.iter().find_map(|n| match &n.content {
                RenderedContent::Block {
                    section: Some(s), ..
                } => Some(s.as_str()),
                _ => None,
            });
            let prefix = row::generated_prefix(
                &target.host_path(filepath),
                filepath,
                mode.as_deref(),
                &text,
                section,
            )
            .map_err(|message| PlanError::Config {
                path: runtime_path.into(),
                message,
            })?;
            (prefix, news.iter().map(|&n| n.clone()).collect())
        }
        RowKey::SipAttributes { .. } => (Vec::new(), row::endpoint_edits(bundle, &text, news)),
    };
    let news: Vec<&RenderedEdit> = news.iter().collect();
    let as_file = FileState {
        content: [prefix.as_slice(), &text].concat(),
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    // An endpoint block that must gain or lose its `[endpoint]` header (the
    // employee's own options gained or lost theirs) moves: out, then in again.
    let moves = news.iter().any(|n| {
        let id = BlockId {
            bundle: bundle.to_string(),
            edit: n.edit_id.clone(),
        };
        let header = |body: &[u8]| body.starts_with(row::ENDPOINT_HEADER.as_bytes());
        matches!(row.key, RowKey::SipAttributes { .. })
            && matches!(&n.content, RenderedContent::Block { body, .. }
                if marker::block_body(&text, style(comment), &id)
                    .ok()
                    .flatten()
                    .is_some_and(|old| header(old) != header(body.as_bytes())))
    });
    let mut forced = Vec::new();
    let mut newline_moved = Vec::new();
    let (after, mut edits) = if moves {
        let (removed, _) = plan_blocks(
            DocEdits {
                target,
                bundle,
                path: &check_path,
                olds,
                news: &[],
                force,
            },
            Some(&as_file),
            &mut forced,
            &mut newline_moved,
        )
        .map_err(&named)?;
        plan_blocks(
            DocEdits {
                target,
                bundle,
                path: &check_path,
                olds: &[],
                news: &news,
                force,
            },
            removed.as_ref(),
            &mut forced,
            &mut newline_moved,
        )
    } else {
        plan_blocks(
            DocEdits {
                target,
                bundle,
                path: &check_path,
                olds,
                news: &news,
                force,
            },
            Some(&as_file),
            &mut forced,
            &mut newline_moved,
        )
    }
    .map_err(&named)?;
    out.forced.extend(
        forced
            .into_iter()
            .map(|note| note.replacen(check_path.as_str(), runtime_path, 1)),
    );
    for edit in &mut edits {
        edit.path = runtime_path.to_string();
    }
    out.added_newline_moved.extend(
        newline_moved
            .into_iter()
            .map(|edit| (runtime_path.to_string(), edit)),
    );
    let after_text = match after {
        Some(a) => a
            .content
            .strip_prefix(prefix.as_slice())
            .map(<[u8]>::to_vec)
            .ok_or_else(|| PlanError::Config {
                path: runtime_path.into(),
                message: "featpkg's block would land in the text MikoPBX generates, outside the custom file's own text (bug)".into(),
            })?,
        None => Vec::new(),
    };
    let baseline = baseline.cloned().unwrap_or_else(|| current.clone());
    // Blocks of this bundle that stay: planned ones, and those of features not
    // being removed (an uninstall of one feature plans only that feature's edits).
    let ours_remain = !edits.is_empty()
        || marker::scan(&after_text, style(comment))
            .map(|blocks| blocks.iter().any(|b| b.id.bundle == bundle))
            .unwrap_or(true);
    let after_row = if after_text == text {
        current.clone()
    } else if !ours_remain
        && after_text == row::decode_content(baseline.as_ref().and_then(|b| b.content.as_deref()))
    {
        baseline.clone()
    } else {
        Some(row_with_text(
            runtime_path,
            &row.key,
            current.as_ref(),
            baseline.as_ref(),
            &after_text,
            ours_remain,
        )?)
    };
    if ours_remain {
        out.row_baselines.insert(runtime_path.to_string(), baseline);
    }
    out.edits.extend(edits);
    if after_row != current {
        out.changes.push(DocChange::row(
            runtime_path.to_string(),
            row,
            current,
            after_row,
        ));
    }
    Ok(())
}

/// The longest advanced options (`m_Sip.manualattributes`, as text) MikoPBX's
/// employee form saves.
const MAX_ADVANCED_OPTIONS: usize = 1024;

/// The row holding `text`. A custom-file row must be in a mode in which MikoPBX
/// uses its text: `none` (text ignored) becomes `append` while our blocks are in it.
fn row_with_text(
    runtime_path: &str,
    key: &RowKey,
    current: Option<&RowState>,
    baseline: Option<&RowState>,
    text: &[u8],
    has_our_blocks: bool,
) -> Result<RowState, PlanError> {
    let content = Some(row::base64_encode(text));
    if let RowKey::SipAttributes { extension } = key {
        let length = String::from_utf8_lossy(text).chars().count();
        if has_our_blocks && length > MAX_ADVANCED_OPTIONS {
            return Err(PlanError::Config {
                path: runtime_path.into(),
                message: format!(
                    "employee {extension}'s advanced options would be {length} characters with featpkg's block, and MikoPBX's employee form accepts at most {MAX_ADVANCED_OPTIONS} (PBXCoreREST/Lib/Employees/DataStructure.php sip_manualattributes), so the admin could no longer save that employee: shorten the employee's own advanced options, or leave {extension} out of the feature's endpoints"
                ),
            });
        }
        return Ok(RowState {
            content,
            mode: None,
            changed: None,
            description: None,
        });
    }
    let mode = current.and_then(|c| c.mode.clone());
    let mode = match mode.as_deref() {
        Some("script") => {
            return Err(PlanError::Config {
                path: runtime_path.into(),
                message: "the custom file is in mode `script` (its text is a shell script run after the file is written); featpkg cannot add configuration to it: switch it to `append` or `override` first".into(),
            });
        }
        Some("append" | "override" | "custom") => mode,
        // `none` or no row: our text is used only in `append` mode; once our
        // blocks are gone, go back to the mode the row had.
        _ if has_our_blocks => Some("append".to_string()),
        _ => baseline
            .and_then(|b| b.mode.clone())
            .or(mode)
            .or_else(|| Some("none".into())),
    };
    Ok(RowState {
        content,
        mode,
        // MikoPBX sets changed = '1' on a save and back to '0' once applied.
        changed: Some("1".into()),
        description: current
            .and_then(|c| c.description.clone())
            .or_else(|| Some("featpkg feature blocks".into())),
    })
}
