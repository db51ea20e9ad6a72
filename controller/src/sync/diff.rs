//! A line diff of two records for `drover sync --dry-run`: both sides rendered as YAML (so a hand-written YAML
//! record and the pretty JSON a sync writes compare by content, not by format), then the longest common
//! subsequence of their lines, printed as hunks with three lines of context.

use serde_json::Value;

/// Lines of unchanged context around each change.
const CONTEXT: usize = 3;

/// Above this many cells (`lines × lines` of the part that differs) the LCS table is not built and the part is
/// shown as removed then added: a bound on time and memory for records near Consul's 512 KiB limit.
const MAX_CELLS: usize = 4_000_000;

/// One line of a diff.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Line<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// A record as YAML text: parsed leniently from bytes (YAML or JSON), or the bytes as text when they are not one
/// document.
pub fn record_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes).into_owned();
    match crate::app::split_documents(&text) {
        Ok(mut documents) if documents.len() == 1 => documents.pop().map_or(text.clone(), |v| value_text(&v, &text)),
        _ => text,
    }
}

fn value_text(value: &Value, fallback: &str) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|_| fallback.to_owned())
}

/// The diff from `old` to `new` as `-`/`+`/` ` lines in `@@` hunks; empty when they are equal.
pub fn unified(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let lines = diff_lines(&a, &b);
    let changed: Vec<usize> =
        lines.iter().enumerate().filter(|(_, l)| !matches!(l, Line::Same(_))).map(|(i, _)| i).collect();
    let mut out = String::new();
    let mut shown_to = 0;
    let mut i = 0;
    while i < changed.len() {
        let start = changed[i].saturating_sub(CONTEXT).max(shown_to);
        let mut end = changed[i];
        while i < changed.len() && changed[i] <= end + 2 * CONTEXT + 1 {
            end = changed[i];
            i += 1;
        }
        let end = (end + CONTEXT + 1).min(lines.len());
        out.push_str("@@\n");
        for line in &lines[start..end] {
            let (mark, text) = match line {
                Line::Same(t) => (' ', t),
                Line::Removed(t) => ('-', t),
                Line::Added(t) => ('+', t),
            };
            out.push(mark);
            out.push_str(text);
            out.push('\n');
        }
        shown_to = end;
    }
    out
}

/// The edit script from `a` to `b`: common prefix and suffix trimmed, LCS of the middle.
fn diff_lines<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Line<'a>> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (ma, mb) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut out: Vec<Line<'a>> = a[..prefix].iter().map(|l| Line::Same(l)).collect();
    if ma.len().saturating_mul(mb.len()) > MAX_CELLS {
        out.extend(ma.iter().map(|l| Line::Removed(l)));
        out.extend(mb.iter().map(|l| Line::Added(l)));
    } else {
        // lcs[i][j]: the LCS length of ma[i..] and mb[j..].
        let width = mb.len() + 1;
        let mut lcs = vec![0usize; (ma.len() + 1) * width];
        for i in (0..ma.len()).rev() {
            for j in (0..mb.len()).rev() {
                lcs[i * width + j] = if ma[i] == mb[j] {
                    lcs[(i + 1) * width + j + 1] + 1
                } else {
                    lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < ma.len() && j < mb.len() {
            if ma[i] == mb[j] {
                out.push(Line::Same(ma[i]));
                i += 1;
                j += 1;
            } else if lcs[(i + 1) * width + j] >= lcs[i * width + j + 1] {
                out.push(Line::Removed(ma[i]));
                i += 1;
            } else {
                out.push(Line::Added(mb[j]));
                j += 1;
            }
        }
        out.extend(ma[i..].iter().map(|l| Line::Removed(l)));
        out.extend(mb[j..].iter().map(|l| Line::Added(l)));
    }
    out.extend(a[a.len() - suffix..].iter().map(|l| Line::Same(l)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_should_show_only_changed_lines_with_context() {
        let old: String = (0..20).map(|i| format!("line {i}\n")).collect();
        let new = old.replace("line 10\n", "line ten\n");
        assert_eq!(
            unified(&old, &new),
            "@@\n line 7\n line 8\n line 9\n-line 10\n+line ten\n line 11\n line 12\n line 13\n"
        );
        assert_eq!(unified(&old, &old), "");
    }

    #[test]
    fn unified_should_show_insertions_and_removals() {
        assert_eq!(unified("a\nb\nc\n", "a\nc\nd\n"), "@@\n a\n-b\n c\n+d\n");
        assert_eq!(unified("", "x\n"), "@@\n+x\n");
    }

    #[test]
    fn record_text_should_render_yaml_and_json_records_alike() {
        let json = br#"{"kind": "App", "metadata": {"name": "web"}}"#;
        let yaml = b"kind: App\nmetadata:\n  name: web\n";
        assert_eq!(record_text(json), record_text(yaml));
    }
}
