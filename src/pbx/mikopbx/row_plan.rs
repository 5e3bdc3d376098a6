//! Planning featpkg's blocks in MikoPBX's database rows (custom files and
//! employees' advanced options, see [`super::row`]): the planner's block rules
//! applied to the text a row holds, as Asterisk will read it, plus the row's
//! own columns and its exact restore.
//!
//! The planner sees only text: this module hands it the row's text (after the
//! text MikoPBX generates, for a custom file) and turns the text it plans back
//! into the row's columns.

use super::row::{self, RowKey, RowRef, RowState};
use crate::feature::{RenderedContent, RenderedEdit, Written};
use crate::marker::{self, BlockId};
use crate::plan::{DocChange, DocEdits, Plan, PlanError, comment_of, plan_blocks, style};
use crate::txn::FileState;

/// The row's text as the planner sees it.
struct RowText {
    /// The row as it is now.
    current: Option<RowState>,
    /// Its decoded text.
    text: Vec<u8>,
    /// What precedes that text in the file MikoPBX writes (the generated
    /// configuration, for a custom file in mode `append`; else empty).
    prefix: Vec<u8>,
    /// The path the planner's checks read (and their messages name): the
    /// custom file's own path, so includes beside it are followed.
    check_path: String,
    /// The bundle's blocks for the row, as they go into its text.
    news: Vec<RenderedEdit>,
    /// The comment character of the bundle's blocks in this row.
    comment: char,
    /// An employee's endpoint options (whose blocks may move, see
    /// [`endpoint_block_moves`]).
    is_endpoint_options: bool,
}

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
pub(super) fn plan_row(
    edits: DocEdits,
    row: RowRef,
    baseline: Option<&Option<RowState>>,
    out: &mut Plan,
) -> Result<(), PlanError> {
    let runtime_path = edits.path;
    if edits.is_owned_file() {
        return Err(PlanError::Config {
            path: runtime_path.into(),
            message: "a whole file cannot go into a database row".into(),
        });
    }
    let view = row_text(edits, &row)?;
    let (after_text, planned_any) = plan_text(edits, &view, out)?;
    let baseline = baseline.cloned().unwrap_or_else(|| view.current.clone());
    // Blocks of this bundle that stay: planned ones, and those of features not
    // being removed (an uninstall of one feature plans only that feature's edits).
    let ours_remain = planned_any
        || marker::scan(&after_text, style(view.comment))
            .map(|blocks| blocks.iter().any(|b| b.id.bundle == edits.bundle))
            .unwrap_or(true);
    let after_row = if after_text == view.text {
        view.current.clone()
    } else if !ours_remain && after_text == text_of(baseline.as_ref()) {
        baseline.clone()
    } else {
        Some(row_with_text(
            runtime_path,
            &row.key,
            view.current.as_ref(),
            baseline.as_ref(),
            &after_text,
            ours_remain,
        )?)
    };
    if ours_remain {
        out.row_baselines.insert(runtime_path.to_string(), baseline);
    }
    if after_row != view.current {
        out.changes.push(DocChange::row(
            runtime_path.to_string(),
            row,
            view.current,
            after_row,
        ));
    }
    Ok(())
}

fn text_of(state: Option<&RowState>) -> Vec<u8> {
    state.map(RowState::text).unwrap_or_default()
}

/// Reads the row and prepares its text for the planner.
fn row_text(edits: DocEdits, row: &RowRef) -> Result<RowText, PlanError> {
    let runtime_path = edits.path;
    let current = row.read()?;
    let text = text_of(current.as_ref());
    let comment = comment_of(edits.olds, edits.news);
    // Marker problems are reported with the row's own line numbers.
    marker::scan(&text, style(comment)).map_err(|e| PlanError::Markers {
        path: runtime_path.into(),
        message: e.to_string(),
    })?;
    let (check_path, prefix, news) = match &row.key {
        RowKey::CustomFile { filepath } => {
            let prefix = custom_file_prefix(edits, &row.key, filepath, current.as_ref(), &text)?;
            let news = edits.news.iter().map(|&n| n.clone()).collect();
            (filepath.clone(), prefix, news)
        }
        RowKey::SipAttributes { .. } => (
            runtime_path.to_string(),
            Vec::new(),
            row::endpoint_edits(edits.bundle, &text, edits.news),
        ),
    };
    Ok(RowText {
        current,
        text,
        prefix,
        check_path,
        news,
        comment,
        is_endpoint_options: matches!(row.key, RowKey::SipAttributes { .. }),
    })
}

/// The generated text before a custom file's own, after checking that the
/// row's mode lets featpkg's blocks take effect and nothing else with them.
fn custom_file_prefix(
    edits: DocEdits,
    key: &RowKey,
    filepath: &str,
    current: Option<&RowState>,
    text: &[u8],
) -> Result<Vec<u8>, PlanError> {
    let comment = comment_of(edits.olds, edits.news);
    let runtime_path = edits.path;
    let mode = current.and_then(|c| c.mode.clone());
    if !edits.news.is_empty() && mode.as_deref() == Some("script") {
        // Refused before the checks, which would read the script as config.
        row_with_text(runtime_path, key, current, None, text, true)?;
    }
    // MikoPBX ignores the text of a row in mode `none`; the `append`
    // our blocks need would bring that text back to life.
    let others = marker::without_blocks_of(text, style(comment), edits.bundle).unwrap_or_default();
    if !edits.news.is_empty()
        && mode.as_deref() == Some("none")
        && !others.iter().all(u8::is_ascii_whitespace)
    {
        return Err(PlanError::Config {
            path: runtime_path.into(),
            message: "the custom file is in mode `none`, so MikoPBX ignores the text it holds; featpkg would switch it to `append` for its blocks, and that text would take effect too: delete the text or choose the mode yourself first".into(),
        });
    }
    let section = edits.news.iter().find_map(|n| match &n.content {
        RenderedContent::Block {
            section: Some(s), ..
        } => Some(s.as_str()),
        _ => None,
    });
    row::generated_prefix(
        &edits.target.host_path(filepath),
        filepath,
        mode.as_deref(),
        text,
        section,
    )
    .map_err(|message| PlanError::Config {
        path: runtime_path.into(),
        message,
    })
}

/// An endpoint block that must gain or lose its `[endpoint]` header (the
/// employee's own options gained or lost theirs) moves: out, then in again.
fn endpoint_block_moves(edits: DocEdits, view: &RowText, news: &[&RenderedEdit]) -> bool {
    let header = |body: &[u8]| body.starts_with(row::ENDPOINT_HEADER.as_bytes());
    news.iter().any(|n| {
        let id = BlockId {
            bundle: edits.bundle.to_string(),
            edit: n.edit_id.clone(),
        };
        view.is_endpoint_options
            && matches!(&n.content, RenderedContent::Block { body: Written::Full(body), .. }
                if marker::block_body(&view.text, style(view.comment), &id)
                    .ok()
                    .flatten()
                    .is_some_and(|old| header(old) != header(body.as_bytes())))
    })
}

/// Plans the bundle's blocks in the row's text with the planner's block rules;
/// returns the row's text afterwards and whether the bundle has blocks
/// planned in it. Notes, newline facts and installed edits go to `out`, named
/// by the row.
fn plan_text(
    edits: DocEdits,
    view: &RowText,
    out: &mut Plan,
) -> Result<(Vec<u8>, bool), PlanError> {
    let runtime_path = edits.path;
    let news: Vec<&RenderedEdit> = view.news.iter().collect();
    let as_file = FileState {
        content: [view.prefix.as_slice(), &view.text].concat(),
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    let on_text = DocEdits {
        path: &view.check_path,
        news: &news,
        ..edits
    };
    let named = |e: PlanError| e.renamed(&view.check_path, runtime_path);
    let mut forced = Vec::new();
    let mut newline_moved = Vec::new();
    let (after, planned) = if endpoint_block_moves(edits, view, &news) {
        let removing = DocEdits {
            news: &[],
            ..on_text
        };
        let (removed, _) = plan_blocks(removing, Some(&as_file), &mut forced, &mut newline_moved)
            .map_err(named)?;
        let adding = DocEdits {
            olds: &[],
            ..on_text
        };
        plan_blocks(adding, removed.as_ref(), &mut forced, &mut newline_moved)
    } else {
        plan_blocks(on_text, Some(&as_file), &mut forced, &mut newline_moved)
    }
    .map_err(named)?;
    out.forced.extend(
        forced
            .into_iter()
            .map(|note| note.replacen(view.check_path.as_str(), runtime_path, 1)),
    );
    let planned_any = !planned.is_empty();
    out.edits.extend(
        planned
            .into_iter()
            .map(|edit| (runtime_path.to_string(), edit)),
    );
    out.added_newline_moved.extend(
        newline_moved
            .into_iter()
            .map(|edit| (runtime_path.to_string(), edit)),
    );
    let after_text = match after {
        Some(a) => a
            .content
            .strip_prefix(view.prefix.as_slice())
            .map(<[u8]>::to_vec)
            .ok_or_else(|| PlanError::Config {
                path: runtime_path.into(),
                message: "featpkg's block would land in the text MikoPBX generates, outside the custom file's own text (bug)".into(),
            })?,
        None => Vec::new(),
    };
    Ok((after_text, planned_any))
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
