//! Where a key sits in a TOML text, so that a problem found after parsing (an
//! unknown key in a connector section, a value a connector refuses) names its file,
//! line and column as a parse error does.

use toml::de::{DeTable, DeValue};

/// A line of a TOML text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// The line's text.
    pub text: String,
}

/// Where the key at `path` (`source.paht`, `schedules[0].job.target.url`) is
/// written: its key when present, else the deepest table on the way that is (a
/// missing key is reported at its table). `None` when nothing on the path is in
/// the text or the text does not parse.
pub fn locate(text: &str, path: &str) -> Option<Place> {
    let root = DeTable::parse(text).ok()?;
    let mut table: &DeTable<'_> = root.get_ref();
    let mut found: Option<std::ops::Range<usize>> = None;
    let mut value: Option<&DeValue<'_>> = None;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (name, indexes) = split_indexes(segment);
        if let Some(v) = value {
            table = v.as_table()?;
        }
        let Some((key, v)) = table.get_key_value(name) else {
            break;
        };
        found = Some(key.span());
        let mut v = v;
        for i in indexes {
            match v.get_ref().get(i) {
                Some(item) => {
                    found = Some(item.span());
                    v = item;
                }
                None => return found.map(|span| place(text, span.start)),
            }
        }
        value = Some(v.get_ref());
        if !v.get_ref().is_table() {
            break;
        }
    }
    found.map(|span| place(text, span.start))
}

/// `schedules[0][1]` as `schedules` and its indexes.
fn split_indexes(segment: &str) -> (&str, Vec<usize>) {
    let name_end = segment.find('[').unwrap_or(segment.len());
    let indexes = segment[name_end..]
        .split(['[', ']'])
        .filter_map(|i| i.parse().ok())
        .collect();
    (&segment[..name_end], indexes)
}

fn place(text: &str, offset: usize) -> Place {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    Place {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
        text: text[line_start..line_end].trim_end_matches('\r').to_owned(),
    }
}

/// `origin:line:column: field: message`, then the line with a caret under the key,
/// as a parse error shows it; `origin: field: message` when the key is not found.
/// The quoted line never shows a secret: URL passwords and the values of secret keys
/// are masked (an error about an inline password must not print it).
pub fn describe(origin: &str, text: &str, field: &str, message: &str) -> String {
    match locate(text, field) {
        Some(mut p) => {
            p.text = masked(&p.text, field);
            let gutter = p.line.to_string();
            format!(
                "{origin}:{}:{}: {field}: {message}\n {gutter} | {}\n {} | {}^",
                p.line,
                p.column,
                p.text,
                " ".repeat(gutter.len()),
                " ".repeat(p.column - 1)
            )
        }
        None => format!("{origin}: {field}: {message}"),
    }
}

/// A quoted line with its secrets masked.
fn masked(line: &str, field: &str) -> String {
    let line = crate::secret::redact_urls(line);
    match line.split_once('=') {
        Some((key, _)) if crate::secret::is_secret_key(field) => format!("{key}= \"***\""),
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = "mode = \"full\"\n\n[source]\ntype = \"file\"\npaht = \"w.ndjson\"\n\n\
                       [target]\ntype = \"salesforce\"\nauth = { flow = \"jwt\", client_idd = \"x\" }\n";

    #[test]
    fn a_key_in_a_section_is_found_at_its_line_and_column() {
        let p = locate(JOB, "source.paht").unwrap();
        assert_eq!((p.line, p.column), (5, 1));
        assert_eq!(p.text, "paht = \"w.ndjson\"");
        let p = locate(JOB, "target.auth.client_idd").unwrap();
        assert_eq!((p.line, p.column), (9, 24));
    }

    #[test]
    fn a_missing_key_is_placed_at_its_table() {
        let p = locate(JOB, "source.path").unwrap();
        assert_eq!(p.line, 3);
        assert_eq!(locate(JOB, "options.page_size"), None);
    }

    #[test]
    fn keys_inside_arrays_of_tables_are_found() {
        let text = "[[schedules]]\nname = \"a\"\n[[schedules]]\nname = \"b\"\n\
                    [schedules.job.source]\ntype = \"file\"\npaht = \"x\"\n";
        let p = locate(text, "schedules[1].job.source.paht").unwrap();
        assert_eq!(p.line, 7);
    }

    #[test]
    fn the_description_points_at_the_key() {
        let d = describe("job.toml", JOB, "source.paht", "unknown field `paht`");
        assert!(
            d.starts_with("job.toml:5:1: source.paht: unknown field `paht`\n 5 | paht"),
            "{d}"
        );
        assert!(d.ends_with("\n   | ^"), "{d}");
    }

    #[test]
    fn a_quoted_line_never_shows_a_secret() {
        let text = "[target]\nurl = \"postgres://app:hunter2@db/x\"\n\
                    [source]\nclient_secret = \"hunter2\"\n";
        let d = describe("j.toml", text, "target.url", "carries a password");
        assert!(
            d.contains("postgres://app:***@db/x") && !d.contains("hunter2"),
            "{d}"
        );
        let d = describe("j.toml", text, "source.client_secret", "inline");
        assert!(
            d.contains("client_secret = \"***\"") && !d.contains("hunter2"),
            "{d}"
        );
    }
}
