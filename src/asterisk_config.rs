//! Enough understanding of Asterisk config files to refuse bad edits before
//! writing them (reference/asterisk.md §3): sections with `(!)`, `(+)`,
//! `(+type=x)` and templates, `key = value` / `key => value`, comments (`;`,
//! `\;`, nested `;-- --;` blocks), `#include`/`#tryinclude`, and for
//! extensions.conf the (context, extension, priority) pairs including
//! `same => n` and `n(label)`.
//!
//! Pure functions over bytes; includes are read through a caller-supplied reader.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

/// A parsed config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Name used in messages (`extensions.conf`).
    pub path: String,
    /// Every section in file order; a name may appear more than once (Asterisk
    /// then has two sections of that name, or `(+)` appends to the first).
    pub sections: Vec<Section>,
    /// The `#include`/`#tryinclude` lines, in file order (not yet read).
    pub includes: Vec<Include>,
    /// Line of a `;--` block comment never closed: Asterisk ignores everything
    /// after it (with a warning), so a block appended there would be dead text.
    pub unclosed_comment: Option<usize>,
}

/// One `[name](options)` section and its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The name between the brackets, trimmed: `from-internal`, `modules`.
    pub name: String,
    /// 1-based line of the header.
    pub line: usize,
    /// `(+)`: appends to the first existing section of that name.
    pub append: bool,
    /// `(+type=endpoint)`: only a section whose `type` is this.
    pub append_filter: Option<(String, String)>,
    /// `(!)`: a template.
    pub template: bool,
    /// Templates/sections it inherits from.
    pub inherits: Vec<String>,
    /// The `key = value` lines in file order (lines without `=` are left out,
    /// as Asterisk ignores them).
    pub entries: Vec<Entry>,
    /// From the header line's start to the end of the section's last entry line.
    pub span: Range<usize>,
}

/// `key = value` or `key => value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The text before `=`, trimmed, without the `+` of `+=`: `exten`, `load`.
    pub key: String,
    /// The text after `=` or `=>`, comments stripped and trimmed:
    /// `_X.,1,NoOp()` for `exten => _X.,1,NoOp()`.
    pub value: String,
    /// Written with `=>`.
    pub object: bool,
    /// 1-based line number in the file.
    pub line: usize,
}

/// `#include` / `#tryinclude`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// The file named, without quotes or `<>`: relative to the config
    /// directory (`pjsip.d/*.conf`, wildcards allowed) or absolute.
    pub target: String,
    /// `#tryinclude`: a missing file is skipped.
    pub optional: bool,
    /// 1-based line of the `#include` in the including file.
    pub line: usize,
    /// The section the `#include` line is in: Asterisk splices the included text
    /// in place, so its lines before a header of its own belong to this section.
    pub section: Option<String>,
}

/// A config the checks cannot read; names the file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A line Asterisk would reject (or that would make it reject the file).
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The file's name in messages (`extensions.conf`).
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    #[error(
        "{file}:{line}: #include {target:?} does not exist (Asterisk would refuse the whole file)"
    )]
    /// An `#include` (not `#tryinclude`) of a file that does not exist.
    MissingInclude {
        /// The including file.
        file: String,
        /// 1-based line of the `#include`.
        line: usize,
        /// The file it names, as written.
        target: String,
    },
    #[error("{file}:{line}: #include {target:?}: {message}")]
    /// An `#include` featpkg cannot follow: an include loop, a path with `..`,
    /// a wildcard whose directory cannot be listed, or a file that cannot be read.
    BadInclude {
        /// The including file.
        file: String,
        /// 1-based line of the `#include`.
        line: usize,
        /// The file it names, as written.
        target: String,
        /// Why it cannot be followed.
        message: String,
    },
    /// The top-level file (not an include) does not exist or cannot be read.
    #[error("cannot read {file}: {message}")]
    Read {
        /// The file, relative to the config directory.
        file: String,
        /// The I/O error, or "file does not exist".
        message: String,
    },
}

/// Strips comments from one line, tracking `;-- --;` block comments across lines.
///
/// Works on bytes: every delimiter is ASCII, and no byte of a multi-byte UTF-8
/// character is ASCII, so this is the same as going char by char. The line
/// itself comes back (a slice) when nothing but a trailing comment goes.
fn strip_comments<'a>(line: &'a str, depth: &mut usize) -> Cow<'a, str> {
    let bytes = line.as_bytes();
    let opens = |rest: &[u8]| rest.starts_with(b";--") && !rest.starts_with(b";---");
    // The fast path: no block comment open and no `\;` before the first `;`.
    if *depth == 0 {
        let semi = line.find(';').unwrap_or(bytes.len());
        let escaped = semi > 0 && bytes[semi - 1] == b'\\';
        if !escaped && !opens(&bytes[semi..]) {
            return Cow::Borrowed(&line[..semi]);
        }
    }
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        if *depth > 0 {
            if rest.starts_with(b"--;") {
                *depth -= 1;
                i += 3;
            } else if opens(rest) {
                *depth += 1;
                i += 3;
            } else {
                i += 1;
            }
            continue;
        }
        match rest[0] {
            b'\\' if rest.get(1) == Some(&b';') => {
                out.push(b';');
                i += 2;
            }
            b';' if opens(rest) => {
                *depth += 1;
                i += 3;
            }
            b';' => break,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    // Only whole characters were copied: cut at ASCII bytes only.
    Cow::Owned(String::from_utf8(out).expect("cut at ASCII delimiters"))
}

/// Parses one config file.
pub fn parse(text: &[u8], path: &str) -> Result<ConfigFile, ConfigError> {
    parse_in_section(text, path, None)
}

/// Parses a fragment that will sit inside section `section` (e.g. a block placed
/// at the end of `[modules]`, which has no header of its own). The implicit
/// section has line 0.
pub fn parse_in_section(
    text: &[u8],
    path: &str,
    section: Option<&str>,
) -> Result<ConfigFile, ConfigError> {
    parse_keeping(text, path, section, &|_| true)
}

/// Parses a file keeping the entries only of the sections whose name `keep`
/// accepts: every section is still there, with its header, options and span,
/// and every error is found, but a big file costs no memory for entries no
/// one will look at. `keep` is asked once per section.
pub fn parse_keeping(
    text: &[u8],
    path: &str,
    section: Option<&str>,
    keep: &dyn Fn(&str) -> bool,
) -> Result<ConfigFile, ConfigError> {
    let mut lines = CodeLines::new(text);
    let mut file = ConfigFile {
        path: path.to_string(),
        sections: Vec::new(),
        includes: Vec::new(),
        unclosed_comment: None,
    };
    let mut keeping = false;
    if let Some(name) = section {
        file.sections.push(Section::new(name.to_string(), 0, 0..0));
        keeping = keep(name);
    }
    for line in lines.by_ref() {
        if let Some(directive) = line.code.strip_prefix('#') {
            let current = file.sections.last().map(|s| s.name.clone());
            file.includes
                .extend(include(directive, line.number, current));
            continue;
        }
        if let Some(rest) = line.code.strip_prefix('[') {
            let header = parse_header(rest, line.number, line.start..line.end)
                .map_err(|message| syntax(path, line.number, message))?;
            keeping = keep(&header.name);
            file.sections.push(header);
            continue;
        }
        let Some(section) = file.sections.last_mut() else {
            return Err(syntax(
                path,
                line.number,
                "text before any [section] (Asterisk: \"No category context\", the whole file is rejected)".into(),
            ));
        };
        // Asterisk warns and ignores a line without '='.
        if keeping {
            let Some(entry) = parse_entry(&line.code, line.number) else {
                continue;
            };
            section.entries.push(entry);
        } else if !line.code.contains('=') {
            continue;
        }
        section.span.end = line.end_of_entry.max(section.span.start);
    }
    file.unclosed_comment = lines.unclosed_comment();
    Ok(file)
}

fn syntax(path: &str, line: usize, message: String) -> ConfigError {
    ConfigError::Syntax {
        file: path.to_string(),
        line,
        message,
    }
}

/// One line of a config file that holds more than comments and blanks.
struct CodeLine<'a> {
    /// 1-based line number.
    number: usize,
    /// Byte offsets of the line in the file (`end` after its line ending).
    start: usize,
    end: usize,
    /// Where a section holding an entry on this line ends: after the line, or
    /// at its start when a block comment is left open on it (a block may go
    /// after a line only if no comment is left open on it).
    end_of_entry: usize,
    /// The line without comments, trimmed.
    code: Cow<'a, str>,
}

/// The lines of a file that hold code, one at a time; once they are all read,
/// [`CodeLines::unclosed_comment`] tells the line of a `;--` block comment
/// that is never closed (Asterisk ignores everything after it).
///
/// Offsets count the file's own bytes: each line is decoded on its own, so a
/// Latin-1 or cp1251 comment (not UTF-8) cannot shift the positions of the
/// lines after it.
struct CodeLines<'a> {
    text: &'a [u8],
    /// `text` when it is all UTF-8 (then its lines need no decoding one by one).
    utf8: Option<&'a str>,
    offset: usize,
    number: usize,
    depth: usize,
    comment_opened: usize,
}

impl<'a> CodeLines<'a> {
    fn new(text: &'a [u8]) -> Self {
        let bom = if text.starts_with(b"\xef\xbb\xbf") {
            3
        } else {
            0
        };
        CodeLines {
            text,
            utf8: std::str::from_utf8(text).ok(),
            offset: bom,
            number: 0,
            depth: 0,
            comment_opened: 0,
        }
    }

    fn unclosed_comment(&self) -> Option<usize> {
        (self.depth > 0).then_some(self.comment_opened)
    }
}

impl<'a> Iterator for CodeLines<'a> {
    type Item = CodeLine<'a>;

    fn next(&mut self) -> Option<CodeLine<'a>> {
        while self.offset < self.text.len() {
            let start = self.offset;
            let rest = &self.text[start..];
            let line = self.utf8.map(|all| &all[start..]);
            let len = match line {
                Some(line) => line.find('\n'),
                None => rest.iter().position(|&b| b == b'\n'),
            }
            .map_or(rest.len(), |i| i + 1);
            self.offset += len;
            self.number += 1;
            let raw = &rest[..len];
            let depth_before = self.depth;
            let code = match line.map_or_else(|| std::str::from_utf8(raw), |l| Ok(&l[..len])) {
                Ok(content) => trimmed(strip_comments(line_content(content), &mut self.depth)),
                Err(_) => {
                    let content = String::from_utf8_lossy(raw);
                    let code = strip_comments(line_content(&content), &mut self.depth);
                    Cow::Owned(code.trim().to_string())
                }
            };
            if depth_before == 0 && self.depth > 0 {
                self.comment_opened = self.number;
            }
            if code.is_empty() {
                continue;
            }
            return Some(CodeLine {
                number: self.number,
                start,
                end: self.offset,
                end_of_entry: if self.depth == 0 { self.offset } else { start },
                code,
            });
        }
        None
    }
}

/// A line without its line ending.
fn line_content(line: &str) -> &str {
    line.trim_end_matches(['\n', '\r'])
}

/// `code` trimmed, borrowed still when it was.
fn trimmed(code: Cow<'_, str>) -> Cow<'_, str> {
    match code {
        Cow::Borrowed(c) => Cow::Borrowed(c.trim()),
        Cow::Owned(c) if c.trim().len() == c.len() => Cow::Owned(c),
        Cow::Owned(c) => Cow::Owned(c.trim().to_string()),
    }
}

/// The include a `#` directive line makes (its text after the `#`), if it is
/// one. `section` is the section the line is in.
fn include(directive: &str, line: usize, section: Option<String>) -> Option<Include> {
    let (word, arg) = directive.split_once([' ', '\t']).unwrap_or((directive, ""));
    let arg = arg.trim().trim_matches(['"', '<', '>']).to_string();
    // Asterisk compares directive names without regard to case.
    let word = word.to_ascii_lowercase();
    match word.as_str() {
        "include" | "tryinclude" => Some(Include {
            target: arg,
            optional: word == "tryinclude",
            line,
            section,
        }),
        _ => None, // #exec and unknown directives: Asterisk warns or runs them; nothing to check
    }
}

impl Section {
    fn new(name: String, line: usize, span: Range<usize>) -> Section {
        Section {
            name,
            line,
            append: false,
            append_filter: None,
            template: false,
            inherits: Vec::new(),
            entries: Vec::new(),
            span,
        }
    }
}

/// The section a header line opens: `rest` is the line after its `[`, `line`
/// its number, `span` its bytes. The error is the message for a syntax error
/// on the line.
fn parse_header(rest: &str, line: usize, span: Range<usize>) -> Result<Section, String> {
    let close = rest.find(']').ok_or("section header has no closing ']'")?;
    let mut section = Section::new(rest[..close].trim().to_string(), line, span);
    let after = rest[close + 1..].trim();
    let Some(opts) = after.strip_prefix('(') else {
        if !after.is_empty() {
            return Err(format!("unexpected text {after:?} after section header"));
        }
        return Ok(section);
    };
    let opts = opts
        .strip_suffix(')')
        .ok_or("section options have no closing ')'")?;
    for opt in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        if opt == "!" {
            section.template = true;
        } else if opt == "+" {
            section.append = true;
        } else if let Some(filter) = opt.strip_prefix('+') {
            section.append = true;
            let (k, v) = filter
                .split_once('=')
                .ok_or_else(|| format!("append filter {opt:?} must look like +key=value"))?;
            section.append_filter = Some((k.trim().to_string(), v.trim().to_string()));
        } else {
            section.inherits.push(opt.to_string());
        }
    }
    Ok(section)
}

/// A `key = value` or `key => value` line (`key +=` appends like `key =`);
/// `None` for a line without `=`.
fn parse_entry(code: &str, line: usize) -> Option<Entry> {
    let eq = code.find('=')?;
    let (key, mut value) = (code[..eq].trim(), &code[eq + 1..]);
    let mut object = false;
    if let Some(v) = value.strip_prefix('>') {
        object = true;
        value = v;
    }
    let key = key.strip_suffix('+').map(str::trim).unwrap_or(key);
    Some(Entry {
        key: key.to_string(),
        value: value.trim().to_string(),
        object,
        line,
    })
}

/// Reads config files for [`load_with_includes`]. Paths are as written in an
/// `#include` (relative to the config directory, or absolute).
pub trait ConfigSource {
    /// The file's bytes, or Ok(None) when it does not exist.
    fn read(&mut self, path: &str) -> std::io::Result<Option<Vec<u8>>>;
    /// The names of the entries of directory `dir` (`""` = the config directory);
    /// empty when it does not exist.
    fn list(&mut self, dir: &str) -> std::io::Result<Vec<String>>;
}

/// A file's bytes for a [`ConfigSource`]: `None` when it does not exist.
pub fn read_if_exists(path: &std::path::Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The names of the files (not directories) in `dir` for a [`ConfigSource`];
/// empty when it does not exist.
pub fn file_names(dir: &std::path::Path) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry.path().is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(names)
}

/// Loads `rel_path` and, depth first in order, what it `#include`s (globs
/// expanded in sorted order, as Asterisk's glob(3) does).
pub fn load_with_includes(
    rel_path: &str,
    source: &mut dyn ConfigSource,
) -> Result<Vec<ConfigFile>, ConfigError> {
    let mut loader = Loader {
        source,
        overlay: None,
        keep: &|_| true,
        stack: Vec::new(),
        out: Vec::new(),
    };
    loader.load(rel_path, None)?;
    Ok(loader.out)
}

/// [`load_with_includes`] where `rel_path` reads as `text` (what it would be
/// after a change), and only the entries of sections `keep` accepts are kept
/// (see [`parse_keeping`]).
pub fn load_with_includes_over(
    rel_path: &str,
    text: &[u8],
    source: &mut dyn ConfigSource,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<ConfigFile>, ConfigError> {
    let mut loader = Loader {
        source,
        overlay: Some((rel_path, text)),
        keep,
        stack: Vec::new(),
        out: Vec::new(),
    };
    loader.load(rel_path, None)?;
    Ok(loader.out)
}

/// One [`load_with_includes`]: where files come from, and what is loaded so far.
struct Loader<'a> {
    source: &'a mut dyn ConfigSource,
    /// A file read from this text instead of the source.
    overlay: Option<(&'a str, &'a [u8])>,
    keep: &'a dyn Fn(&str) -> bool,
    /// The files being loaded, outermost first (an include loop is refused).
    stack: Vec<String>,
    out: Vec<ConfigFile>,
}

/// Where an include comes from: file, line, `#tryinclude`, current section.
#[derive(Clone, Copy)]
struct IncludedFrom<'a> {
    file: &'a str,
    line: usize,
    optional: bool,
    section: Option<&'a str>,
}

fn has_wildcards(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// Shell-style match of one file name: `*`, `?`, `[abc]`, `[a-z]`, `[!a]`.
fn wildcard_match(pattern: &[char], name: &[char]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some(('*', rest)) => (0..=name.len()).any(|i| wildcard_match(rest, &name[i..])),
        Some(('?', rest)) => !name.is_empty() && wildcard_match(rest, &name[1..]),
        Some(('[', rest)) => {
            let Some(close) = rest.iter().skip(1).position(|&c| c == ']').map(|i| i + 1) else {
                return name.first() == Some(&'[') && wildcard_match(rest, &name[1..]);
            };
            let Some(&c) = name.first() else { return false };
            let (negate, set) = match rest[0] {
                '!' | '^' => (true, &rest[1..close]),
                _ => (false, &rest[..close]),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == '-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != negate && wildcard_match(&rest[close + 1..], &name[1..])
        }
        Some((p, rest)) => name.first() == Some(p) && wildcard_match(rest, &name[1..]),
    }
}

/// The files an `#include` pattern names, sorted; wildcards only in the last part.
fn expand_glob(pattern: &str, source: &mut dyn ConfigSource) -> Result<Vec<String>, String> {
    let (dir, name) = pattern.rsplit_once('/').unwrap_or(("", pattern));
    if has_wildcards(dir) {
        return Err("wildcards in directory names are not followed by featpkg's checks".into());
    }
    let name: Vec<char> = name.chars().collect();
    let mut found: Vec<String> = source
        .list(dir)
        .map_err(|e| e.to_string())?
        .into_iter()
        // Like glob(3): a leading dot must be matched explicitly.
        .filter(|n| !n.starts_with('.') || name.first() == Some(&'.'))
        .filter(|n| wildcard_match(&name, &n.chars().collect::<Vec<_>>()))
        .map(|n| {
            if dir.is_empty() {
                n
            } else {
                format!("{dir}/{n}")
            }
        })
        .collect();
    found.sort();
    Ok(found)
}

impl Loader<'_> {
    fn load(&mut self, path: &str, from: Option<IncludedFrom>) -> Result<(), ConfigError> {
        let bad = |message: &str| match &from {
            Some(from) => ConfigError::BadInclude {
                file: from.file.to_string(),
                line: from.line,
                target: path.to_string(),
                message: message.to_string(),
            },
            None => ConfigError::Read {
                file: path.to_string(),
                message: message.to_string(),
            },
        };
        let missing = || match &from {
            Some(from) if from.optional => Ok(()),
            Some(from) => Err(ConfigError::MissingInclude {
                file: from.file.to_string(),
                line: from.line,
                target: path.to_string(),
            }),
            None => Err(bad("file does not exist")),
        };
        if path.split('/').any(|p| p == "..") {
            return Err(bad(
                "'..' leaves the config directory; featpkg does not follow it",
            ));
        }
        if has_wildcards(path) {
            let files = expand_glob(path, self.source).map_err(|m| bad(&m))?;
            if files.is_empty() {
                return missing(); // glob(3) found nothing: Asterisk treats it as a missing file
            }
            for file in files {
                self.load(&file, from)?;
            }
            return Ok(());
        }
        if self.stack.iter().any(|p| p == path) || self.stack.len() > 32 {
            return Err(bad("include loop"));
        }
        let bytes = match self.overlay {
            Some((name, text)) if name == path => Cow::Borrowed(text),
            _ => match self.source.read(path) {
                Ok(Some(b)) => Cow::Owned(b),
                Ok(None) => return missing(),
                Err(e) => return Err(bad(&e.to_string())),
            },
        };
        let section = from.as_ref().and_then(|f| f.section);
        let parsed = parse_keeping(&bytes, path, section, self.keep)?;
        drop(bytes);
        let includes = parsed.includes.clone();
        self.out.push(parsed);
        self.stack.push(path.to_string());
        for inc in &includes {
            let from = IncludedFrom {
                file: path,
                line: inc.line,
                optional: inc.optional,
                section: inc.section.as_deref(),
            };
            self.load(&inc.target, Some(from))?;
        }
        self.stack.pop();
        Ok(())
    }
}

/// A change featpkg would make that clashes with what is there, at `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The file that holds the clashing line, as named in messages
    /// (`extensions.conf`, or an included file such as `extensions_custom.conf`).
    pub file: String,
    /// 1-based line number in that file.
    pub line: usize,
    /// What clashes, for a person: e.g. which context and priority already exist.
    pub message: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// One dialplan priority: (context, extension, priority) and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialplanEntry {
    /// The section it is in: `from-internal`.
    pub context: String,
    /// The extension as written (`100`, `s`); a pattern (`_X.`) in upper case,
    /// as Asterisk compares patterns without regard to case.
    pub exten: String,
    /// Priority number; `hint` is 0.
    pub priority: i64,
    /// The file it is in, as named in messages.
    pub file: String,
    /// 1-based line number in that file.
    pub line: usize,
}

fn normalize_exten(exten: &str) -> String {
    let exten = exten.trim();
    if exten.starts_with('_') {
        exten.to_ascii_uppercase()
    } else {
        exten.to_string()
    }
}

/// True for the extensions.conf sections that are not contexts: `[general]`
/// (pbx_config's settings) and `[globals]` (global variables). pbx_config.c
/// compares them with strcasecmp, so `[GLOBALS]` is the same section.
pub fn is_reserved_dialplan_section(name: &str) -> bool {
    name.eq_ignore_ascii_case("general") || name.eq_ignore_ascii_case("globals")
}

/// Each section of a dialplan fragment that opens (or appends to) `[general]`
/// or `[globals]`: Asterisk would read its lines as settings or global
/// variables, not as a context (`exten=_X!,1,NoOp()` becomes a variable).
pub fn reserved_dialplan_sections(added: &ConfigFile) -> Vec<Conflict> {
    added
        .sections
        .iter()
        .filter(|s| is_reserved_dialplan_section(&s.name))
        .map(|s| Conflict {
            file: added.path.clone(),
            line: s.line,
            message: format!(
                "[{}] is not a context: Asterisk reads extensions.conf's [general] and [globals] (in any case) as settings and global variables, so the block's lines would become those instead of dialplan",
                s.name
            ),
        })
        .collect()
}

/// Every (context, extension, priority) of an extensions.conf (and its includes).
pub fn dialplan_entries(files: &[ConfigFile]) -> Vec<DialplanEntry> {
    let mut out = Vec::new();
    for file in files {
        for section in &file.sections {
            if is_reserved_dialplan_section(&section.name) || section.template {
                continue;
            }
            // `same =>`, `n` and labels refer back within the section only.
            let mut priorities = Priorities::default();
            for entry in &section.entries {
                let Some((exten, priority)) = priorities.next(entry) else {
                    continue;
                };
                out.push(DialplanEntry {
                    context: section.name.clone(),
                    exten,
                    priority,
                    file: file.path.clone(),
                    line: entry.line,
                });
            }
        }
    }
    out
}

/// What the lines of one context read so far say about the next: the
/// extension `same =>` continues, the last priority (`n`, `s`) and the labels
/// of the current extension (`label+1`).
#[derive(Default)]
struct Priorities {
    current: Option<String>,
    last: i64,
    labels: BTreeMap<String, i64>,
}

impl Priorities {
    /// The (extension, priority) an `exten =>` or `same =>` entry adds; `None`
    /// for other entries and for a priority that cannot be resolved (not checked).
    fn next(&mut self, entry: &Entry) -> Option<(String, i64)> {
        let (exten, prio_text) = match entry.key.as_str() {
            "exten" => {
                let mut parts = entry.value.splitn(3, ',');
                let exten = normalize_exten(parts.next().unwrap_or(""));
                let prio = parts.next().unwrap_or("").trim().to_string();
                if self.current.as_deref() != Some(exten.as_str()) {
                    self.labels.clear();
                }
                (exten, prio)
            }
            "same" => {
                let exten = self.current.clone()?;
                let prio = entry.value.split(',').next().unwrap_or("").trim();
                (exten, prio.to_string())
            }
            _ => return None,
        };
        let (base, label) = match prio_text.split_once('(') {
            Some((b, l)) => (b.trim(), Some(l.trim_end_matches(')').to_string())),
            None => (prio_text.as_str(), None),
        };
        let number = self.number(base);
        self.current = Some(exten.clone());
        let number = number?;
        if number > 0 {
            self.last = number;
        }
        if let Some(label) = label {
            self.labels.insert(label, number);
        }
        Some((exten, number))
    }

    /// The number of priority `base` (without its label): `hint` is 0.
    fn number(&self, base: &str) -> Option<i64> {
        // `n`/`s` need an earlier line in this section; Asterisk skips the line otherwise.
        let first_in_section = self.last == 0;
        if base == "hint" {
            Some(0)
        } else if base == "n" || base == "next" {
            (!first_in_section).then_some(self.last + 1)
        } else if base == "s" || base == "same" {
            (!first_in_section).then_some(self.last)
        } else if let Ok(n) = base.parse::<i64>() {
            Some(n)
        } else if let Some((l, k)) = base.split_once('+') {
            let start = if l.trim() == "n" {
                (!first_in_section).then_some(self.last)
            } else {
                self.labels.get(l.trim()).copied()
            };
            start.zip(k.trim().parse::<i64>().ok()).map(|(s, k)| s + k)
        } else {
            None // a label reference we cannot resolve: not checked
        }
    }
}

/// Each (context, extension, priority) in `added` that `existing` already has.
pub fn dialplan_conflicts(existing: &[ConfigFile], added: &ConfigFile) -> Vec<Conflict> {
    let there = dialplan_entries(existing);
    let mut out = Vec::new();
    for new in dialplan_entries(std::slice::from_ref(added)) {
        if let Some(old) = there.iter().find(|o| {
            o.context == new.context && o.exten == new.exten && o.priority == new.priority
        }) {
            let prio = if new.priority == 0 {
                "hint".to_string()
            } else {
                format!("priority {}", new.priority)
            };
            out.push(Conflict {
                file: old.file.clone(),
                line: old.line,
                message: format!(
                    "[{}] already has exten {} {prio}; featpkg would add the same ({}, line {})",
                    new.context, new.exten, new.file, new.line
                ),
            });
        }
    }
    out
}

/// The value of `key` in a section, following its templates (first match wins).
fn resolve_key<'a>(
    files: &'a [ConfigFile],
    section: &'a Section,
    key: &str,
    depth: usize,
) -> Option<&'a str> {
    if let Some(e) = section.entries.iter().rev().find(|e| e.key == key) {
        return Some(&e.value);
    }
    if depth > 16 {
        return None;
    }
    for parent in &section.inherits {
        let found = files
            .iter()
            .flat_map(|f| f.sections.iter())
            .filter(|s| s.name.eq_ignore_ascii_case(parent) && !s.append)
            .find_map(|s| resolve_key(files, s, key, depth + 1));
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Each `[x](+)` (or `[x](+type=t)`) in `added` whose section does not exist in
/// `existing` (Asterisk rejects the whole file then).
pub fn append_conflicts(existing: &[ConfigFile], added: &ConfigFile) -> Vec<Conflict> {
    let mut out = Vec::new();
    for (index, section) in added.sections.iter().enumerate() {
        if !section.append {
            continue;
        }
        // Asterisk finds the section to append to with strcasecmp (main/config.c).
        let earlier_in_added = added.sections[..index]
            .iter()
            .any(|s| s.name.eq_ignore_ascii_case(&section.name) && !s.append);
        let exists = existing
            .iter()
            .flat_map(|f| f.sections.iter())
            .filter(|s| s.name.eq_ignore_ascii_case(&section.name) && !s.append && !s.template)
            .any(|s| match &section.append_filter {
                None => true,
                Some((k, v)) => resolve_key(existing, s, k, 0) == Some(v.as_str()),
            });
        if !exists && !earlier_in_added {
            let wanted = match &section.append_filter {
                Some((k, v)) => format!("[{}] section with {k} = {v}", section.name),
                None => format!("[{}] section", section.name),
            };
            out.push(Conflict {
                file: added.path.clone(),
                line: section.line,
                message: format!(
                    "appends to [{}], but no {wanted} exists (Asterisk would reject the whole file)",
                    section.name
                ),
            });
        }
    }
    out
}

/// Each `[x](parent)` in `added` whose parent does not exist before it: Asterisk
/// (main/config.c) looks the parent up among the categories read so far,
/// templates or not, by name without regard to case, and rejects the whole
/// file ("Inheritance requested, but category 'parent' does not exist") when
/// there is none. A parent in `added` must come earlier in it; one in
/// `existing` (the PBX's files, which featpkg's blocks follow) may be anywhere.
pub fn inheritance_conflicts(existing: &[ConfigFile], added: &ConfigFile) -> Vec<Conflict> {
    let mut out = Vec::new();
    for (index, section) in added.sections.iter().enumerate() {
        for parent in &section.inherits {
            let defines = |s: &Section| s.name.eq_ignore_ascii_case(parent) && !s.append;
            let exists = added.sections[..index].iter().any(defines)
                || existing.iter().flat_map(|f| f.sections.iter()).any(defines);
            if !exists {
                out.push(Conflict {
                    file: added.path.clone(),
                    line: section.line,
                    message: format!(
                        "[{}] inherits from [{parent}], but no [{parent}] section exists before it (Asterisk would reject the whole file)",
                        section.name
                    ),
                });
            }
        }
    }
    out
}

/// Each section `added` defines (not `(+)`) whose name `existing` already uses,
/// e.g. an AMI user in manager.conf that the admin already has.
pub fn section_conflicts(existing: &[ConfigFile], added: &ConfigFile) -> Vec<Conflict> {
    let mut out = Vec::new();
    for new in added.sections.iter().filter(|s| !s.append) {
        if let Some((file, old)) = existing
            .iter()
            .flat_map(|f| f.sections.iter().map(move |s| (f, s)))
            .find(|(_, s)| s.name.eq_ignore_ascii_case(&new.name))
        {
            out.push(Conflict {
                file: file.path.clone(),
                line: old.line,
                message: format!(
                    "[{}] already exists; featpkg would define it again ({}, line {})",
                    new.name, added.path, new.line
                ),
            });
        }
    }
    out
}

fn module_name(value: &str) -> String {
    let v = value.trim().to_ascii_lowercase();
    v.strip_suffix(".so").unwrap_or(&v).to_string()
}

/// Each `load` in `added` of a module the admin `noload`s in `[modules]`.
pub fn module_conflicts(existing_modules_conf: &[ConfigFile], added: &ConfigFile) -> Vec<Conflict> {
    let noloads: Vec<(&ConfigFile, &Entry)> = existing_modules_conf
        .iter()
        .flat_map(|f| {
            f.sections
                .iter()
                .filter(|s| s.name == "modules")
                .map(move |s| (f, s))
        })
        .flat_map(|(f, s)| {
            s.entries
                .iter()
                .filter(|e| e.key == "noload")
                .map(move |e| (f, e))
        })
        .collect();
    let mut out = Vec::new();
    for load in added
        .sections
        .iter()
        .filter(|s| s.name == "modules")
        .flat_map(|s| s.entries.iter())
        .filter(|e| e.key == "load")
    {
        if let Some((file, noload)) = noloads
            .iter()
            .find(|(_, e)| module_name(&e.value) == module_name(&load.value))
        {
            out.push(Conflict {
                file: file.path.clone(),
                line: noload.line,
                message: format!(
                    "noload => {}, but featpkg needs to load {} (remove the noload or skip this feature)",
                    noload.value, load.value
                ),
            });
        }
    }
    out
}

/// Byte offset just after the last entry line of the LAST section called `name`:
/// where a block "at the end of `[modules]`" goes.
pub fn section_end(file: &ConfigFile, name: &str) -> Option<usize> {
    file.sections
        .iter()
        .rev()
        .find(|s| s.name == name)
        .map(|s| s.span.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> ConfigFile {
        parse(text.as_bytes(), "extensions.conf").unwrap()
    }

    #[test]
    fn general_and_globals_are_not_contexts_in_any_case() {
        let block = p(
            "[ok]\nexten => 1,1,NoOp()\n[GLOBALS]\nexten=_X!,1,NoOp()\n[general](+)\nstatic=yes\n",
        );
        let found = reserved_dialplan_sections(&block);
        assert_eq!(
            found.iter().map(|c| c.line).collect::<Vec<_>>(),
            [3, 5],
            "{found:?}"
        );
        assert!(
            found[0]
                .to_string()
                .starts_with("extensions.conf:3: [GLOBALS] is not a context")
        );
        // Their lines are no (context, exten, priority).
        let entries = dialplan_entries(std::slice::from_ref(&block));
        assert_eq!(
            entries
                .iter()
                .map(|e| e.context.as_str())
                .collect::<Vec<_>>(),
            ["ok"]
        );
        assert!(reserved_dialplan_sections(&p("[globals-ish]\n[my-general]\n")).is_empty());
    }

    #[test]
    fn sections_options_and_entries() {
        let f = p(
            "[general]\nstatic=yes\n[tpl](!)\ntype=endpoint\n[201](tpl)\nallow => alaw\n[201](+type=endpoint)\nx=1\n",
        );
        let names: Vec<_> = f.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["general", "tpl", "201", "201"]);
        assert!(f.sections[1].template);
        assert_eq!(f.sections[2].inherits, ["tpl"]);
        assert!(f.sections[2].entries[0].object);
        assert_eq!(
            f.sections[3].append_filter,
            Some(("type".into(), "endpoint".into()))
        );
    }

    #[test]
    fn comments_block_comments_and_escaped_semicolons() {
        let f = p(
            "[a]\nx = 1 ; trailing\n;-- hidden\nexten => 1,1,NoOp()\n--;\ny = a\\;b\n;--- not a block\nz = 2\n",
        );
        let keys: Vec<_> = f.sections[0]
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(keys, [("x", "1"), ("y", "a;b"), ("z", "2")]);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = parse(b"[a]\nx=1\n[b\n", "x.conf").unwrap_err();
        assert_eq!(e.to_string(), "x.conf:3: section header has no closing ']'");
        let e = parse(b"x=1\n[a]\n", "x.conf").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("x.conf:1: text before any [section]"),
            "{e}"
        );
    }

    #[test]
    fn n_on_the_first_line_of_a_section_is_skipped_like_asterisk_does() {
        // pbx_config: "Can't use 'next' priority on the first entry", line ignored.
        let f = p("[ctx]\nexten => 100,n,NoOp()\nexten => 100,1,NoOp()\n same => n,NoOp()\n");
        let got: Vec<_> = dialplan_entries(&[f])
            .into_iter()
            .map(|e| (e.exten, e.priority, e.line))
            .collect();
        assert_eq!(got, [("100".to_string(), 1, 3), ("100".to_string(), 2, 4)]);
    }

    #[test]
    fn inheritance_needs_an_earlier_section_template_or_not() {
        let existing = vec![p(
            "[admin-tpl](!)\nexten => s,1,NoOp()\n[internal]\nexten => 1,1,NoOp()\n[only-appended](+)\nx=1\n",
        )];
        let check = |text: &str| -> Vec<String> {
            inheritance_conflicts(&existing, &p(text))
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        // A template, a plain context, any case, a template earlier in the block.
        assert!(check("[a](admin-tpl)\n[b](INTERNAL)\n[t](!)\n[c](t,admin-tpl)\n").is_empty());
        // A parent that does not exist, one only later in the block, itself,
        // and a name that only ever appears as an append.
        assert_eq!(
            check(
                "[a](featpkg-no-such-template)\nexten => 1,1,NoOp()\n[b](later)\n[later](!)\n[self](self)\n[d](only-appended)\n"
            ),
            [
                "extensions.conf:1: [a] inherits from [featpkg-no-such-template], but no [featpkg-no-such-template] section exists before it (Asterisk would reject the whole file)",
                "extensions.conf:3: [b] inherits from [later], but no [later] section exists before it (Asterisk would reject the whole file)",
                "extensions.conf:5: [self] inherits from [self], but no [self] section exists before it (Asterisk would reject the whole file)",
                "extensions.conf:6: [d] inherits from [only-appended], but no [only-appended] section exists before it (Asterisk would reject the whole file)",
            ]
        );
        // `(!)` and `(+)` are options, not parents.
        assert!(check("[t](!)\n[internal](+)\n").is_empty());
    }

    #[test]
    fn append_and_new_section_names_ignore_case_like_asterisk() {
        // config.c finds categories with strcasecmp.
        let pjsip = parse(b"[Alice](!)\ntype=endpoint\n[Bob](Alice)\n", "pjsip.conf").unwrap();
        let added = parse(b"[bob](+type=endpoint)\nx=1\n", "ours").unwrap();
        assert!(append_conflicts(std::slice::from_ref(&pjsip), &added).is_empty());
        let added = parse(b"[BOB]\nx=1\n", "ours").unwrap();
        assert_eq!(section_conflicts(&[pjsip], &added).len(), 1);
    }

    #[test]
    fn an_unclosed_block_comment_is_reported_with_its_line() {
        let f = p("[a]\nx=1\n;-- old stuff\n;-- nested --;\ny=2\n");
        assert_eq!(f.unclosed_comment, Some(3));
        assert_eq!(p("[a]\n;-- x --;\n").unclosed_comment, None);
        // A comment opened after the last entry on its line: a block goes before that line.
        let text = "[modules]\nload => a.so\nload => b.so ;-- disabled:\nload => c.so\n--;\n";
        let f = p(text);
        assert_eq!(
            &text[..section_end(&f, "modules").unwrap()],
            "[modules]\nload => a.so\n"
        );
    }

    #[test]
    fn dialplan_priorities_same_n_and_labels() {
        let f = p(
            "[ctx]\nexten => 100,1,NoOp()\n same => n(again),NoOp()\n same => n,Goto(again)\nexten => _x!,1,NoOp()\nexten => 100,hint,PJSIP/100\n[other]\n same => n,NoOp()\n",
        );
        let got: Vec<_> = dialplan_entries(&[f])
            .into_iter()
            .map(|e| (e.context, e.exten, e.priority, e.line))
            .collect();
        assert_eq!(
            got,
            [
                ("ctx".to_string(), "100".to_string(), 1, 2),
                ("ctx".to_string(), "100".to_string(), 2, 3),
                ("ctx".to_string(), "100".to_string(), 3, 4),
                ("ctx".to_string(), "_X!".to_string(), 1, 5),
                ("ctx".to_string(), "100".to_string(), 0, 6),
            ]
        );
    }

    #[test]
    fn dialplan_collision_names_the_existing_line() {
        let existing = p("[general]\n\n[internal-users-custom]\nexten => _X!,1,NoOp(admin)\n");
        let added = parse(
            b"[internal-users-custom]\nexten => _x!,1,Gosub(x,${EXTEN},1)\n same => n,Return()\n",
            "ours",
        )
        .unwrap();
        let c = dialplan_conflicts(&[existing], &added);
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].to_string(),
            "extensions.conf:4: [internal-users-custom] already has exten _X! priority 1; featpkg would add the same (ours, line 2)"
        );
        // Another extension in the same context merges fine.
        let other = p("[internal-users-custom]\nexten => 500,1,NoOp()\n");
        assert!(dialplan_conflicts(&[other], &added).is_empty());
    }

    #[test]
    fn append_needs_its_section() {
        let pjsip = parse(b"[201]\ntype=aor\n[201]\ntype=endpoint\n[tpl](!)\ntype=endpoint\n[202](tpl)\n[203]\ntype=aor\n", "pjsip.conf").unwrap();
        let added = parse(b"[201](+type=endpoint)\nx=1\n[202](+type=endpoint)\nx=1\n[203](+type=endpoint)\nx=1\n[204](+)\nx=1\n", "ours").unwrap();
        let c: Vec<String> = append_conflicts(&[pjsip], &added)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(
            c[0],
            "ours:5: appends to [203], but no [203] section with type = endpoint exists (Asterisk would reject the whole file)"
        );
        assert!(
            c[1].starts_with("ours:7: appends to [204], but no [204] section exists"),
            "{c:?}"
        );
    }

    #[test]
    fn load_of_a_noloaded_module() {
        let modules = parse(
            b"[modules]\nautoload=yes\nnoload => Func_ExtState\n",
            "modules.conf",
        )
        .unwrap();
        let added =
            parse_in_section(b"load => func_extstate.so\n", "ours", Some("modules")).unwrap();
        let c = module_conflicts(&[modules], &added);
        assert_eq!(c.len(), 1);
        assert!(
            c[0].to_string()
                .starts_with("modules.conf:3: noload => Func_ExtState"),
            "{}",
            c[0]
        );
    }

    #[test]
    fn offsets_count_the_files_own_bytes() {
        // Not UTF-8 (cp1251), and a BOM: the span still ends right after the entry.
        let text =
            b"\xef\xbb\xbf; \xcf\xf0\xe8\xe2\xe5\xf2\n[modules]\nload => a.so ; \xe9\n; tail\n";
        let f = parse(text, "modules.conf").unwrap();
        let end = section_end(&f, "modules").unwrap();
        assert!(text[..end].ends_with(b"load => a.so ; \xe9\n"));
        assert_eq!(f.sections[0].line, 2);
    }

    #[test]
    fn section_end_is_after_the_last_entry() {
        let text =
            "[modules]\nautoload=yes\n\n; about other\n[other]\nx=1\n[modules]\nload => a.so\n\n";
        let f = p(text);
        assert_eq!(
            &text[..section_end(&f, "modules").unwrap()],
            "[modules]\nautoload=yes\n\n; about other\n[other]\nx=1\n[modules]\nload => a.so\n"
        );
        assert_eq!(section_end(&f, "nope"), None);
    }

    /// An in-memory config directory.
    struct Files(BTreeMap<&'static str, &'static str>);

    impl ConfigSource for Files {
        fn read(&mut self, path: &str) -> std::io::Result<Option<Vec<u8>>> {
            Ok(self.0.get(path).map(|t| t.as_bytes().to_vec()))
        }
        fn list(&mut self, dir: &str) -> std::io::Result<Vec<String>> {
            let prefix = if dir.is_empty() {
                String::new()
            } else {
                format!("{dir}/")
            };
            Ok(self
                .0
                .keys()
                .filter_map(|k| k.strip_prefix(prefix.as_str()))
                .filter(|rest| !rest.contains('/'))
                .map(str::to_string)
                .collect())
        }
    }

    #[test]
    fn globs_sections_and_case_of_includes() {
        let mut files = Files(BTreeMap::from([
            (
                "extensions.conf",
                "[a]\n#INCLUDE <conf.d/*.conf>\n[hooks]\n#include \"hook?.conf\"\n#tryinclude none/*.conf\n",
            ),
            ("conf.d/20-b.conf", "[b]\nexten => 2,1,NoOp()\n"),
            ("conf.d/10-a.conf", "exten => 1,1,NoOp()\n"),
            ("conf.d/.hidden.conf", "[hidden]\n"),
            ("conf.d/notes.txt", "[txt]\n"),
            ("hook1.conf", "exten => _X!,1,NoOp()\n"),
            ("bad.conf", "[x]\n#include nothing*.conf\n"),
            ("deep.conf", "[x]\n#include */x.conf\n"),
        ]));
        let loaded = load_with_includes("extensions.conf", &mut files).unwrap();
        assert_eq!(
            loaded.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            [
                "extensions.conf",
                "conf.d/10-a.conf",
                "conf.d/20-b.conf",
                "hook1.conf"
            ]
        );
        let got: Vec<_> = dialplan_entries(&loaded)
            .into_iter()
            .map(|e| (e.context, e.exten, e.file, e.line))
            .collect();
        assert_eq!(
            got,
            [
                ("a".into(), "1".into(), "conf.d/10-a.conf".into(), 1),
                ("b".into(), "2".into(), "conf.d/20-b.conf".into(), 2),
                ("hooks".into(), "_X!".into(), "hook1.conf".into(), 1),
            ] as [(String, String, String, usize); 3]
        );
        assert_eq!(
            load_with_includes("bad.conf", &mut files)
                .unwrap_err()
                .to_string(),
            "bad.conf:2: #include \"nothing*.conf\" does not exist (Asterisk would refuse the whole file)"
        );
        assert!(
            load_with_includes("deep.conf", &mut files)
                .unwrap_err()
                .to_string()
                .contains("wildcards in directory names")
        );
        for (pattern, name, hit) in [
            ("*.conf", "a.conf", true),
            ("*.conf", "a.conf.bak", false),
            ("x[0-9].conf", "x7.conf", true),
            ("x[!0-9].conf", "x7.conf", false),
            ("?.conf", "ab.conf", false),
        ] {
            let p: Vec<char> = pattern.chars().collect();
            let n: Vec<char> = name.chars().collect();
            assert_eq!(wildcard_match(&p, &n), hit, "{pattern} {name}");
        }
    }

    #[test]
    fn includes_are_followed_and_checked() {
        let files: BTreeMap<&str, &str> = BTreeMap::from([
            (
                "extensions.conf",
                "[a]\n#include sub.conf\n#tryinclude gone.conf\n",
            ),
            ("sub.conf", "[b]\nexten => 1,1,NoOp()\n"),
            ("loop.conf", "#include loop.conf\n"),
            ("missing.conf", "#include nothere.conf\n"),
            ("escape.conf", "#include ../../etc/passwd\n"),
        ]);
        let mut read = Files(files);
        let loaded = load_with_includes("extensions.conf", &mut read).unwrap();
        assert_eq!(
            loaded.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["extensions.conf", "sub.conf"]
        );
        assert!(
            load_with_includes("loop.conf", &mut read)
                .unwrap_err()
                .to_string()
                .contains("include loop")
        );
        assert_eq!(
            load_with_includes("missing.conf", &mut read)
                .unwrap_err()
                .to_string(),
            "missing.conf:1: #include \"nothere.conf\" does not exist (Asterisk would refuse the whole file)"
        );
        assert!(
            load_with_includes("escape.conf", &mut read)
                .unwrap_err()
                .to_string()
                .contains("'..'")
        );
    }
}
