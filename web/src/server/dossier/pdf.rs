//! The dossier as a PDF: the very page's content, laid out by the one PDF renderer
//! (`documents::pdf`). The page is the dossier's one description; this reads its markup (our
//! own, well-formed maud output) into text blocks, so the PDF can never say something the page
//! does not: headings become headings, each table row and paragraph a line, and what is not for
//! paper (forms, buttons, scripts, `no-print`) is left out, as the print stylesheet does.

use super::super::documents::pdf::{Align, Block};

/// Elements left out with everything inside them.
const SKIPPED: &[&str] = &["form", "button", "script", "style", "select", "textarea"];
/// Elements that end a line.
const BREAKS: &[&str] = &[
    "p", "li", "tr", "h1", "h2", "h3", "div", "section", "article", "table", "ul", "ol", "br",
    "header", "footer", "dt", "dd",
];

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// The tag name of `<name ...>` / `</name>` and whether it is a closing one.
fn tag_name(tag: &str) -> (String, bool) {
    let t = tag.trim_start_matches('<').trim_end_matches('>');
    let closing = t.starts_with('/');
    let name: String = t
        .trim_start_matches('/')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (name.to_ascii_lowercase(), closing)
}

fn is_void(name: &str) -> bool {
    matches!(
        name,
        "br" | "hr" | "img" | "input" | "meta" | "link" | "col" | "wbr"
    )
}

/// The text blocks of an HTML fragment.
pub fn blocks(html: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut line = String::new();
    // Open elements: name, and whether it (or one around it) is left out.
    let mut open: Vec<(String, bool)> = Vec::new();
    let mut heading: Option<String> = None;
    let mut rest = html;
    let flush = |line: &mut String, heading: &Option<String>, out: &mut Vec<Block>| {
        let text = line.split_ascii_whitespace().collect::<Vec<_>>().join(" ");
        let text = text.trim_end_matches('　').to_string();
        line.clear();
        if text.is_empty() {
            return;
        }
        let (size, gap) = match heading.as_deref() {
            Some("h1") => (18.0, 6.0),
            Some("h2") => (14.0, 8.0),
            Some("h3") => (12.0, 4.0),
            _ => (10.0, 0.0),
        };
        if gap > 0.0 {
            out.push(Block::Gap(gap));
        }
        let align = if heading.as_deref() == Some("h1") {
            Align::Center
        } else {
            Align::Left
        };
        out.push(Block::line(text, size, align));
    };
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            if !open.last().is_some_and(|o| o.1) {
                line.push_str(&unescape(rest));
            }
            break;
        };
        let skipping = open.last().is_some_and(|o| o.1);
        if !skipping {
            line.push_str(&unescape(&rest[..lt]));
        }
        let Some(gt) = rest[lt..].find('>') else {
            break;
        };
        let tag = &rest[lt..lt + gt + 1];
        rest = &rest[lt + gt + 1..];
        let (name, closing) = tag_name(tag);
        if name.is_empty() {
            continue;
        }
        if BREAKS.contains(&name.as_str()) {
            if !skipping {
                flush(&mut line, &heading, &mut out);
            }
        } else if (name == "td" || name == "th") && closing && !skipping {
            line.push('　');
        }
        if closing {
            if let Some(at) = open.iter().rposition(|o| o.0 == name) {
                open.truncate(at);
            }
            if matches!(name.as_str(), "h1" | "h2" | "h3") {
                heading = None;
            }
        } else if !is_void(&name) && !tag.ends_with("/>") {
            let skip = skipping
                || SKIPPED.contains(&name.as_str())
                || tag.contains("no-print")
                || tag.contains("print-only");
            if matches!(name.as_str(), "h1" | "h2" | "h3") && !skip {
                heading = Some(name.clone());
            }
            open.push((name, skip));
        }
    }
    flush(&mut line, &heading, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(b: &[Block]) -> Vec<String> {
        b.iter()
            .filter_map(|b| match b {
                Block::Text { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn headings_rows_and_paragraphs_become_lines_and_forms_are_left_out() {
        let html = "<div><p class=\"no-print\"><a href=\"/x\">← 返回</a></p><h1>办件档案：某项目</h1>\
            <table><tr><th>流程</th><td>企业投资项目备案（第 1 版）</td></tr></table>\
            <section><h2>材料与核验</h2><p>《项目总投资额》 &amp; 附图</p>\
            <form method=\"post\"><input name=\"password\"><button>签署</button></form></section></div>";
        let got = texts(&blocks(html));
        assert_eq!(
            got,
            vec![
                "办件档案：某项目",
                "流程　企业投资项目备案（第 1 版）",
                "材料与核验",
                "《项目总投资额》 & 附图",
            ]
        );
    }
}
