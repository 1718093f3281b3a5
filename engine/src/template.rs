//! Document templates: the text of a commitment letter (承诺书) or an official document (批复,
//! 备案证明 …), a file `workflows/documents/<name>.txt` with `{{ name }}` placeholders.
//!
//! The syntax is deliberately small: text and placeholders, nothing else. A document's wording
//! belongs to policy staff, its values to the engine; a placeholder names one value the document
//! provides (lists such as the waived materials arrive already joined). Parsing keeps each
//! placeholder's line and column, so validation can say which variable of which template is not
//! provided before anything is rendered; rendering is then total over the checked variables.

use std::collections::BTreeMap;
use std::fmt;

use crate::span::Pos;

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var { name: String, pos: Pos },
}

/// A template that does not parse: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.pos.line, self.pos.col, self.message)
    }
}

impl std::error::Error for TemplateError {}

/// Rendering met a placeholder with no value (validation checks the variables first, so this
/// is a template that was never validated against what the caller provides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unprovided {
    pub name: String,
    pub pos: Pos,
}

impl fmt::Display for Unprovided {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: no value for `{{{{{}}}}}`",
            self.pos.line, self.pos.col, self.name
        )
    }
}

impl std::error::Error for Unprovided {}

/// Whether `name` may be a placeholder: ASCII letters, digits and `_`, not starting with a digit.
fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Where byte `at` of `src` is, 1-based, columns counted in characters.
fn pos_at(src: &str, at: usize) -> Pos {
    let before = &src[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    Pos {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        col: u32::try_from(col).unwrap_or(u32::MAX),
    }
}

/// Parses a template: `{{ name }}` is a placeholder (spaces inside the braces are optional);
/// a `{{` that does not close, or that holds anything but a name, is an error at its position.
/// A lone `{` or `}` is text.
pub fn parse(src: &str) -> Result<Template, TemplateError> {
    let mut parts = Vec::new();
    let mut rest = 0;
    while let Some(found) = src[rest..].find("{{") {
        let open = rest + found;
        if open > rest {
            parts.push(Part::Text(src[rest..open].to_owned()));
        }
        let inner_start = open + 2;
        let Some(len) = src[inner_start..].find("}}") else {
            return Err(TemplateError {
                pos: pos_at(src, open),
                message: "`{{` is not closed by `}}`".to_owned(),
            });
        };
        let inner = &src[inner_start..inner_start + len];
        let name = inner.trim();
        if !is_name(name) {
            return Err(TemplateError {
                pos: pos_at(src, open),
                message: format!(
                    "`{{{{{inner}}}}}` is not a placeholder: write `{{{{ name }}}}` with a variable \
                     name of letters, digits and `_`"
                ),
            });
        }
        parts.push(Part::Var {
            name: name.to_owned(),
            pos: pos_at(src, open),
        });
        rest = inner_start + len + 2;
    }
    if rest < src.len() {
        parts.push(Part::Text(src[rest..].to_owned()));
    }
    Ok(Template { parts })
}

impl Template {
    /// Every placeholder in order, with where it stands (a variable used twice is listed twice).
    pub fn variables(&self) -> impl Iterator<Item = (&str, Pos)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var { name, pos } => Some((name.as_str(), *pos)),
            Part::Text(_) => None,
        })
    }

    /// The first placeholder whose name is not in `known`.
    pub fn first_unknown(&self, known: &[&str]) -> Option<(&str, Pos)> {
        self.variables().find(|(name, _)| !known.contains(name))
    }

    /// The text with every placeholder replaced by its value.
    pub fn render(&self, values: &BTreeMap<String, String>) -> Result<String, Unprovided> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var { name, pos } => match values.get(name) {
                    Some(v) => out.push_str(v),
                    None => {
                        return Err(Unprovided {
                            name: name.clone(),
                            pos: *pos,
                        });
                    }
                },
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn renders_placeholders_with_and_without_spaces() {
        let t = parse("本单位承诺在{{days}}个工作日内（{{ date }}前）补齐{{materials}}。").unwrap();
        let out = t
            .render(&values(&[
                ("days", "20"),
                ("date", "2027年1月5日"),
                ("materials", "《环评批复》"),
            ]))
            .unwrap();
        assert_eq!(
            out,
            "本单位承诺在20个工作日内（2027年1月5日前）补齐《环评批复》。"
        );
    }

    #[test]
    fn placeholders_are_located_in_characters() {
        let t = parse("第一行\n项目：{{project}}，{{x}}").unwrap();
        let vars: Vec<_> = t.variables().map(|(n, p)| (n, p.line, p.col)).collect();
        assert_eq!(vars, vec![("project", 2, 4), ("x", 2, 16)]);
        assert_eq!(
            t.first_unknown(&["project"])
                .map(|(n, p)| (n, p.line, p.col)),
            Some(("x", 2, 16))
        );
        assert_eq!(t.first_unknown(&["project", "x"]), None);
    }

    #[test]
    fn a_missing_value_is_an_error_naming_it() {
        let t = parse("{{a}}{{b}}").unwrap();
        let err = t.render(&values(&[("a", "1")])).unwrap_err();
        assert_eq!(err.name, "b");
        assert_eq!((err.pos.line, err.pos.col), (1, 6));
    }

    #[test]
    fn unclosed_and_malformed_placeholders_are_refused_where_they_stand() {
        let err = parse("文号\n{{ seq").unwrap_err();
        assert_eq!((err.pos.line, err.pos.col), (2, 1));
        assert!(err.message.contains("not closed"), "{}", err.message);
        let err = parse("ok {{ 项目 }}").unwrap_err();
        assert_eq!((err.pos.line, err.pos.col), (1, 4));
        assert!(parse("{{}}").is_err());
        assert!(parse("{{1a}}").is_err());
    }

    #[test]
    fn single_braces_are_text() {
        let t = parse("{a} } {").unwrap();
        assert_eq!(t.variables().count(), 0);
        assert_eq!(t.render(&BTreeMap::new()).unwrap(), "{a} } {");
    }
}
