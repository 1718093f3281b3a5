//! How wide a line of diagram text is, and how a long name is wrapped over lines.
//!
//! The layout must know how much room a name takes before any font is loaded, so widths are
//! estimated: a CJK character (East Asian wide or full-width, as `unicode-width` reports) takes one
//! em, anything else about six tenths of one. The estimate leans wide so that real fonts fit.
//!
//! Wrapping never drops or shortens text: joining the lines gives back the input with only the
//! spaces at the breaks removed. Chinese breaks between any two characters, except that closing
//! punctuation (`，` `）` `、` …) is never put at the start of a line and opening punctuation (`（`
//! `“` …) never at the end; a run of Latin letters and digits (`project.investment`, `500000`) is
//! kept whole when it fits on a line.

use unicode_width::UnicodeWidthChar;

/// Estimated width in pixels of `text` set at `size` pixels.
pub fn width(text: &str, size: i32) -> i32 {
    let tenths: i32 = text.chars().map(char_tenths).sum();
    // Round up: a box must never come out narrower than its text.
    (tenths * size + 9) / 10
}

/// A character's width in tenths of an em.
fn char_tenths(c: char) -> i32 {
    match c.width() {
        Some(2) => 10,
        Some(0) | None => 0,
        _ => 6,
    }
}

/// Characters a line may not start with.
fn closes(c: char) -> bool {
    "，。、；：？！）》」』】〕”’%,.;:?!)]}".contains(c)
}

/// Characters a line may not end with.
fn opens(c: char) -> bool {
    "（《「『【〔“‘([{".contains(c)
}

/// Latin letters, digits and the punctuation that holds an identifier or number together.
fn joins(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._-/'\"=<>!&|+*".contains(c)
}

/// Splits `text` into pieces that are never broken inside: a Latin word, one CJK character
/// (with closing punctuation after it and opening punctuation before it attached), or a space.
fn pieces(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut glue_next = false;
    for c in text.chars() {
        let attach = match out.last() {
            None => false,
            Some(prev) => {
                let p = prev.chars().last().unwrap_or(' ');
                glue_next
                    || closes(c)
                    || (joins(c) && joins(p) && !c.is_whitespace() && !p.is_whitespace())
            }
        };
        match out.last_mut() {
            Some(last) if attach => last.push(c),
            _ => out.push(c.to_string()),
        }
        glue_next = opens(c);
    }
    out
}

/// Wraps `text` into lines no wider than `max` pixels at `size`, where that is possible: a single
/// piece wider than `max` (a very long identifier) is split by characters. A line is broken,
/// where it can be without leaving it less than a third full, after `、` `，` `；` `：` or before an
/// opening bracket, so that "受理审查（容缺受理）" breaks before its bracket rather than inside.
pub fn wrap(text: &str, size: i32, max: i32) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line: Vec<String> = Vec::new();
    let line_width = |l: &[String]| -> i32 { l.iter().map(|p| width(p, size)).sum() };
    let flush = |lines: &mut Vec<String>, l: &[String]| {
        let t = l.concat();
        if !t.trim().is_empty() {
            lines.push(t.trim().to_string());
        }
    };
    for piece in pieces(text) {
        if piece.chars().all(char::is_whitespace) {
            // A space is kept inside a line and dropped at a break.
            if !line.is_empty() {
                line.push(piece);
            }
            continue;
        }
        if line_width(&line) + width(&piece, size) <= max {
            line.push(piece);
            continue;
        }
        // Break at the last good place, carrying the rest over, if the rest and this piece fit.
        let good = (1..line.len()).rev().find(|&j| {
            let before = line.get(j - 1).and_then(|p| p.chars().last());
            let after = line.get(j).and_then(|p| p.chars().next());
            let soft = before.is_some_and(|c| "、，；：,;".contains(c))
                || after.is_some_and(|c| opens(c) || c.is_whitespace());
            soft && line_width(line.get(..j).unwrap_or(&[])) * 3 >= max
                && line_width(line.get(j..).unwrap_or(&[])) + width(&piece, size) <= max
        });
        let carried: Vec<String> = match good {
            Some(j) => line.split_off(j),
            None => Vec::new(),
        };
        flush(&mut lines, &line);
        line = carried
            .into_iter()
            .skip_while(|p| p.chars().all(char::is_whitespace))
            .collect();
        if line_width(&line) + width(&piece, size) <= max {
            line.push(piece);
            continue;
        }
        if !line.is_empty() {
            flush(&mut lines, &line);
            line.clear();
        }
        if width(&piece, size) <= max {
            line.push(piece);
        } else {
            let mut part = String::new();
            for c in piece.chars() {
                if !part.is_empty() && width(&part, size) + char_tenths(c) * size / 10 > max {
                    lines.push(std::mem::take(&mut part));
                }
                part.push(c);
            }
            line.push(part);
        }
    }
    flush(&mut lines, &line);
    if lines.is_empty() {
        lines.push(String::new());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_spaces(s: &str) -> String {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    }

    #[test]
    fn cjk_is_wider_than_latin() {
        assert_eq!(width("审批", 10), 20);
        assert_eq!(width("ab", 10), 12);
        assert_eq!(width("", 13), 0);
    }

    #[test]
    fn long_names_wrap_without_losing_a_character() {
        let name = "并联审查（发改委牵头、部门会签）";
        let lines = wrap(name, 14, 140);
        assert!(lines.len() > 1, "{lines:?}");
        assert_eq!(lines.concat(), name);
        for l in &lines {
            assert!(width(l, 14) <= 140, "{l}");
            assert!(!l.starts_with(closes), "{lines:?}");
            assert!(!l.ends_with(opens), "{lines:?}");
        }
    }

    #[test]
    fn breaks_before_a_bracket_or_after_a_pause() {
        assert_eq!(
            wrap("综合窗口受理（一窗受理、一套材料）", 14, 140),
            ["综合窗口受理", "（一窗受理、", "一套材料）"]
        );
        assert_eq!(
            wrap("出具批复（可行性研究报告批复）", 14, 168),
            ["出具批复", "（可行性研究报告批复）"]
        );
        assert_eq!(
            wrap("受理审查（容缺受理）", 14, 140),
            ["受理审查（容缺受理）"]
        );
    }

    #[test]
    fn latin_words_stay_whole() {
        let cond = "project.investment >= 500000 && project.tier == \"重中之重\"";
        let lines = wrap(cond, 12, 150);
        assert_eq!(no_spaces(&lines.concat()), no_spaces(cond));
        assert!(
            lines.iter().any(|l| l.contains("project.investment")),
            "{lines:?}"
        );
        assert!(lines.iter().all(|l| width(l, 12) <= 150), "{lines:?}");
    }

    #[test]
    fn a_piece_wider_than_the_line_is_split() {
        let id = "a_very_long_identifier_without_any_break_in_it";
        let lines = wrap(id, 12, 60);
        assert_eq!(lines.concat(), id);
        assert!(lines.iter().all(|l| width(l, 12) <= 60), "{lines:?}");
    }
}
