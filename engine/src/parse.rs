//! Reading a workflow file into the [`model`](crate::model) types.
//!
//! YAML syntax errors, unknown keys and wrong shapes become one located diagnostic (`E001`); the
//! YAML reader stops at the first of those, so the rest of the file is checked only once it reads.

use crate::diag::Diagnostic;
use crate::model::Workflow;
use crate::span::Pos;

/// Parses one workflow file. Never panics on any input.
pub fn parse_workflow(source: &str) -> Result<Workflow, Vec<Diagnostic>> {
    serde_saphyr::from_str::<Workflow>(source).map_err(|e| {
        let mut d = syntax_diagnostic(&e);
        relocate_tab(source, &mut d);
        vec![d]
    })
}

/// The text of a workflow file's bytes: a file that is not UTF-8 is a located `E001` at the
/// first byte that is not (line and column in characters, as every diagnostic).
pub fn source_text(bytes: &[u8]) -> Result<&str, Diagnostic> {
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = &bytes[..e.valid_up_to()];
        // The prefix is valid UTF-8 by construction.
        let before = std::str::from_utf8(valid).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let byte = bytes.get(e.valid_up_to()).copied().unwrap_or_default();
        Diagnostic::error(
            "E001",
            Pos {
                line: u32::try_from(line).unwrap_or(u32::MAX),
                col: u32::try_from(col).unwrap_or(u32::MAX),
            },
            format!("cannot read workflow: byte 0x{byte:02X} is not UTF-8 text"),
        )
        .with_help("save the file as UTF-8 (GBK or GB 18030 files must be converted first)")
    })
}

/// The YAML reader reports a tab in an indentation at the end of the token before it, often on
/// the line above; point at the tab itself: the first line from the reported one whose
/// indentation holds a tab.
fn relocate_tab(source: &str, d: &mut Diagnostic) {
    if !d.message.contains("tab") {
        return;
    }
    let from = d.line.saturating_sub(1) as usize;
    let found = source.lines().enumerate().skip(from).find_map(|(i, line)| {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        line[..indent]
            .find('\t')
            .map(|col| (i, line[..col].chars().count()))
    });
    if let Some((i, col)) = found {
        d.line = u32::try_from(i + 1).unwrap_or(u32::MAX);
        d.col = u32::try_from(col + 1).unwrap_or(u32::MAX);
        d.message =
            "cannot read workflow: a tab in the indentation; YAML indents with spaces".into();
    }
}

/// A YAML reading error as a diagnostic, located where the reader stopped.
pub fn syntax_diagnostic(e: &serde_saphyr::Error) -> Diagnostic {
    let pos = e
        .location()
        .map(|l| Pos {
            line: u32::try_from(l.line()).unwrap_or(u32::MAX),
            col: u32::try_from(l.column()).unwrap_or(u32::MAX),
        })
        .unwrap_or(Pos { line: 1, col: 1 });
    // The reader's own message repeats the position; keep the first line, which says what.
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid YAML").to_string();
    Diagnostic::error("E001", pos, format!("cannot read workflow: {first}"))
        .with_help("check indentation, quoting and key names against workflows/schema.json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RawLimit;

    #[test]
    fn keeps_positions() {
        let src = "id: w\nname: W\ncalendar: cn-mainland\nstart: a\nnodes:\n  - id: a\n    type: task\n    limit: 10wd\n  - id: b\n    type: end\n    outcome: approved\n";
        let w = parse_workflow(src).expect("parses");
        assert_eq!(w.nodes[0].id.pos, Pos { line: 6, col: 9 });
        let lim = w.nodes[0].limit.as_ref().expect("limit");
        assert_eq!(lim.value, RawLimit::Text("10wd".into()));
        assert_eq!(lim.pos.line, 8);
    }

    #[test]
    fn syntax_error_is_located() {
        let src = "id: w\nname: W\ncalendar: [\n";
        let d = parse_workflow(src).expect_err("bad yaml");
        assert_eq!(d[0].code, "E001");
        assert!(d[0].line >= 3, "{d:?}");
    }

    #[test]
    fn a_tab_in_the_indentation_is_located_on_its_own_line() {
        let src = "id: w\nname: W\ncalendar: c\nstart: a\nnodes:\n  - id: a\n    type: task\n\tlimit: 3\n";
        let d = parse_workflow(src).expect_err("tab");
        assert_eq!((d[0].line, d[0].col), (8, 1), "{d:?}");
        assert!(d[0].message.contains("tab"), "{d:?}");
        let src = "id: w\nnodes:\n  - id: a\n  \t  type: task\n";
        let d = parse_workflow(src).expect_err("tab");
        assert_eq!((d[0].line, d[0].col), (4, 3), "{d:?}");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_located() {
        let bytes = b"id: w\nname: \xe5\xae\xa1\xff\n";
        let d = source_text(bytes).expect_err("not utf-8");
        assert_eq!((d.line, d.col), (2, 8), "{d:?}");
        assert!(d.message.contains("0xFF"), "{d:?}");
        assert_eq!(source_text(b"id: w\n"), Ok("id: w\n"));
    }

    #[test]
    fn unknown_key_is_located() {
        let src = "id: w\nname: W\ncalendar: c\nstart: a\nnodes:\n  - id: a\n    type: task\n    limt: 3\n";
        let d = parse_workflow(src).expect_err("unknown key");
        assert_eq!(d[0].line, 8, "{d:?}");
        assert!(d[0].message.contains("limt"), "{d:?}");
    }
}
