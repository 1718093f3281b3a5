//! Reading a workflow file into the [`model`](crate::model) types.
//!
//! YAML syntax errors, unknown keys and wrong shapes become one located diagnostic (`E001`); the
//! YAML reader stops at the first of those, so the rest of the file is checked only once it reads.

use crate::diag::Diagnostic;
use crate::model::Workflow;
use crate::span::Pos;

/// Parses one workflow file. Never panics on any input.
pub fn parse_workflow(source: &str) -> Result<Workflow, Vec<Diagnostic>> {
    serde_saphyr::from_str::<Workflow>(source).map_err(|e| vec![syntax_diagnostic(&e)])
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
    fn unknown_key_is_located() {
        let src = "id: w\nname: W\ncalendar: c\nstart: a\nnodes:\n  - id: a\n    type: task\n    limt: 3\n";
        let d = parse_workflow(src).expect_err("unknown key");
        assert_eq!(d[0].line, 8, "{d:?}");
        assert!(d[0].message.contains("limt"), "{d:?}");
    }
}
