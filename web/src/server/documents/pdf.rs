//! Text blocks to PDF bytes, with an embedded CJK font: the one PDF renderer of the server
//! (official documents here; the dossier's PDF can be produced with it too).
//!
//! The font is a TrueType/OpenType file or collection (`.ttc`, with a face index) read once;
//! krilla embeds only the glyphs used (a subset) with a ToUnicode map, so a reader shows the
//! Chinese text and `pdftotext` extracts it (docs/adr/0008-official-documents.md). Lines are
//! broken by width measured on the character class (CJK and full-width forms one em, others
//! about half), which is how official documents set Chinese text anyway: no hyphenation, no
//! justification. A QR code is drawn as vector squares, so it stays sharp at any zoom.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::Fill;
use krilla::text::{Font, TextDirection};

/// A4, in points.
const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN_X: f32 = 72.0;
const MARGIN_TOP: f32 = 72.0;
const MARGIN_BOTTOM: f32 = 64.0;

/// Why a PDF could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    /// The font file is not there or cannot be read.
    #[error(
        "无法生成 PDF：找不到或无法读取中文字体文件「{path}」（{reason}）。请安装 fonts-wqy-microhei，或用 `shenpi serve --document-font` 指定字体文件。"
    )]
    FontMissing { path: PathBuf, reason: String },
    /// The file is not a font krilla can embed (or the face index is out of range).
    #[error("无法生成 PDF：「{path}」不是可用的 TrueType/OpenType 字体（字形索引 {index}）。")]
    FontUnusable { path: PathBuf, index: u32 },
    #[error("生成 PDF 失败：{0}")]
    Render(String),
}

impl PdfError {
    /// The stable code of the error, for `ApiError`.
    pub fn code(&self) -> &'static str {
        match self {
            PdfError::FontMissing { .. } => "document_font_missing",
            PdfError::FontUnusable { .. } => "document_font_unusable",
            PdfError::Render(_) => "pdf_failed",
        }
    }
}

/// A font to embed, read from a file (a collection's face by its index).
#[derive(Clone)]
pub struct PdfFont {
    font: Font,
}

impl std::fmt::Debug for PdfFont {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PdfFont")
    }
}

impl PdfFont {
    /// Reads face `index` of the font file at `path`.
    pub fn load(path: &Path, index: u32) -> Result<PdfFont, PdfError> {
        let data = std::fs::read(path).map_err(|e| PdfError::FontMissing {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let font = Font::new(Arc::new(data).into(), index).ok_or(PdfError::FontUnusable {
            path: path.to_path_buf(),
            index,
        })?;
        Ok(PdfFont { font })
    }
}

/// How a block's lines sit on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Center,
    Right,
}

/// One block of text (or a rule, a gap, a QR code), from the top of the page down.
#[derive(Debug, Clone)]
pub enum Block {
    Text {
        text: String,
        size: f32,
        align: Align,
        /// Red (the 红头 of an official document) instead of black.
        red: bool,
        /// Indent each paragraph's first line by two characters (正文).
        indent: bool,
    },
    /// A horizontal red rule across the text width (under the issuing authority).
    Rule,
    /// Vertical space, in points.
    Gap(f32),
    /// A QR code of `content`, `size` points wide, at the right margin, with a caption to its
    /// left (each line of the caption one line).
    Qr {
        content: String,
        size: f32,
        caption: Vec<String>,
    },
}

impl Block {
    /// Body text: left-aligned, first lines indented.
    pub fn body(text: impl Into<String>) -> Block {
        Block::Text {
            text: text.into(),
            size: 15.0,
            align: Align::Left,
            red: false,
            indent: true,
        }
    }

    pub fn line(text: impl Into<String>, size: f32, align: Align) -> Block {
        Block::Text {
            text: text.into(),
            size,
            align,
            red: false,
            indent: false,
        }
    }
}

/// The PDF's document information.
#[derive(Debug, Clone, Default)]
pub struct PdfMeta {
    pub title: String,
    pub author: String,
}

/// The width of `c` in ems: CJK, full-width forms and punctuation are square.
fn ems(c: char) -> f32 {
    let u = c as u32;
    let wide = (0x1100..=0x115F).contains(&u)
        || (0x2E80..=0xA4CF).contains(&u)
        || (0xAC00..=0xD7A3).contains(&u)
        || (0xF900..=0xFAFF).contains(&u)
        || (0xFE30..=0xFE4F).contains(&u)
        || (0xFF00..=0xFF60).contains(&u)
        || (0xFFE0..=0xFFE6).contains(&u)
        || (0x20000..=0x3FFFD).contains(&u)
        || c == '〔'
        || c == '〕';
    if wide { 1.0 } else { 0.56 }
}

fn width(s: &str, size: f32) -> f32 {
    s.chars().map(ems).sum::<f32>() * size
}

/// Breaks one paragraph into lines of at most `max` points; the first line is `first` points
/// narrower.
fn wrap(text: &str, size: f32, max: f32, first: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut w = 0.0;
    let mut limit = max - first;
    for c in text.chars() {
        let cw = ems(c) * size;
        // Closing punctuation stays with the line it ends (避头).
        let closing = "，。、；：？！）》」』〕”’".contains(c);
        if w + cw > limit && !line.is_empty() && !closing {
            lines.push(std::mem::take(&mut line));
            w = 0.0;
            limit = max;
        }
        line.push(c);
        w += cw;
    }
    lines.push(line);
    lines
}

/// Lays the blocks out on A4 pages (a new page when one is full) and returns the PDF's bytes.
pub fn render(font: &PdfFont, meta: &PdfMeta, blocks: &[Block]) -> Result<Vec<u8>, PdfError> {
    let mut doc = Document::new();
    doc.set_metadata(
        krilla::metadata::Metadata::new()
            .title(meta.title.clone())
            .creator(meta.author.clone())
            .producer("shenpi".to_string())
            .language("zh-CN".to_string()),
    );
    let text_w = PAGE_W - 2.0 * MARGIN_X;
    let settings = || PageSettings::from_wh(PAGE_W, PAGE_H).ok_or(PdfError::Render("页面".into()));
    let mut page = doc.start_page_with(settings()?);
    let mut surface = page.surface();
    let mut y = MARGIN_TOP;
    let black = Fill::default();
    let red = Fill {
        paint: rgb::Color::new(204, 0, 0).into(),
        opacity: NormalizedF32::ONE,
        rule: Default::default(),
    };
    // Each block: its lines and heights first, then a page break if it does not fit.
    for block in blocks {
        match block {
            Block::Gap(h) => y += h,
            Block::Rule => {
                let mut pb = PathBuilder::new();
                if let Some(r) = Rect::from_xywh(MARGIN_X, y, text_w, 1.5) {
                    pb.push_rect(r);
                }
                if let Some(path) = pb.finish() {
                    surface.set_fill(Some(red.clone()));
                    surface.draw_path(&path);
                }
                y += 8.0;
            }
            Block::Text {
                text,
                size,
                align,
                red: is_red,
                indent,
            } => {
                surface.set_fill(Some(if *is_red { red.clone() } else { black.clone() }));
                let lead = size * 1.6;
                for para in text.split('\n') {
                    let first = if *indent { 2.0 * size } else { 0.0 };
                    for (i, l) in wrap(para, *size, text_w, first).into_iter().enumerate() {
                        if y + lead > PAGE_H - MARGIN_BOTTOM {
                            surface.finish();
                            page.finish();
                            page = doc.start_page_with(settings()?);
                            surface = page.surface();
                            surface.set_fill(Some(if *is_red {
                                red.clone()
                            } else {
                                black.clone()
                            }));
                            y = MARGIN_TOP;
                        }
                        let w = width(&l, *size);
                        let x = match align {
                            Align::Left if i == 0 => MARGIN_X + first,
                            Align::Left => MARGIN_X,
                            Align::Center => MARGIN_X + (text_w - w).max(0.0) / 2.0,
                            Align::Right => MARGIN_X + (text_w - w).max(0.0),
                        };
                        y += lead;
                        surface.draw_text(
                            Point::from_xy(x, y - lead * 0.3),
                            font.font.clone(),
                            *size,
                            &l,
                            false,
                            TextDirection::Auto,
                        );
                    }
                }
            }
            Block::Qr {
                content,
                size,
                caption,
            } => {
                let code = qrcode::QrCode::new(content.as_bytes())
                    .map_err(|e| PdfError::Render(format!("二维码：{e}")))?;
                let n = code.width();
                if y + size + 8.0 > PAGE_H - MARGIN_BOTTOM {
                    surface.finish();
                    page.finish();
                    page = doc.start_page_with(settings()?);
                    surface = page.surface();
                    y = MARGIN_TOP;
                }
                let x0 = MARGIN_X + text_w - size;
                // Four modules of quiet zone are part of the drawn size.
                let cell = size / (n as f32 + 8.0);
                let mut pb = PathBuilder::new();
                for (i, c) in code.to_colors().iter().enumerate() {
                    if *c == qrcode::Color::Dark {
                        let (cx, cy) = ((i % n) as f32 + 4.0, (i / n) as f32 + 4.0);
                        if let Some(r) = Rect::from_xywh(x0 + cx * cell, y + cy * cell, cell, cell)
                        {
                            pb.push_rect(r);
                        }
                    }
                }
                surface.set_fill(Some(black.clone()));
                if let Some(path) = pb.finish() {
                    surface.draw_path(&path);
                }
                let mut cy = y + 8.0;
                for l in caption {
                    cy += 16.0;
                    surface.draw_text(
                        Point::from_xy(MARGIN_X, cy),
                        font.font.clone(),
                        10.0,
                        l,
                        false,
                        TextDirection::Auto,
                    );
                }
                y += size + 4.0;
            }
        }
    }
    surface.finish();
    page.finish();
    doc.finish().map_err(|e| PdfError::Render(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paragraph_wraps_within_the_width() {
        let text = "经审查，该项目符合国家产业政策和行业准入标准，同意备案。".repeat(3);
        let lines = wrap(&text, 15.0, 300.0, 30.0);
        assert!(lines.len() > 2);
        for l in &lines[1..] {
            assert!(width(l, 15.0) <= 300.0 + 15.0, "{l}");
        }
        assert_eq!(lines.concat(), text);
    }

    #[test]
    fn closing_punctuation_never_starts_a_line() {
        let lines = wrap("一二三四。五六", 10.0, 40.0, 0.0);
        assert!(lines.iter().all(|l| !l.starts_with('。')), "{lines:?}");
    }
}
