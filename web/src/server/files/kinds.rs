//! What a material file is, by its first bytes (magic numbers), never by its name: PDF, OFD
//! (a ZIP holding `OFD.xml`), PNG, JPEG, Word and Excel (OOXML ZIPs; the legacy OLE compound
//! files). Anything else is refused, with what it looks like when we can tell (an executable).

/// How many leading bytes [`sniff`] looks at.
pub const HEAD: usize = 64 << 10;

/// An allowed kind of file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Pdf,
    Ofd,
    Png,
    Jpeg,
    Docx,
    Xlsx,
    /// A legacy Office document (`.doc`, `.xls`): an OLE compound file.
    Ole,
}

impl FileKind {
    pub fn code(self) -> &'static str {
        match self {
            FileKind::Pdf => "pdf",
            FileKind::Ofd => "ofd",
            FileKind::Png => "png",
            FileKind::Jpeg => "jpeg",
            FileKind::Docx => "docx",
            FileKind::Xlsx => "xlsx",
            FileKind::Ole => "ole",
        }
    }

    pub fn from_code(code: &str) -> Option<FileKind> {
        [
            FileKind::Pdf,
            FileKind::Ofd,
            FileKind::Png,
            FileKind::Jpeg,
            FileKind::Docx,
            FileKind::Xlsx,
            FileKind::Ole,
        ]
        .into_iter()
        .find(|k| k.code() == code)
    }

    pub fn mime(self) -> &'static str {
        match self {
            FileKind::Pdf => "application/pdf",
            FileKind::Ofd => "application/ofd",
            FileKind::Png => "image/png",
            FileKind::Jpeg => "image/jpeg",
            FileKind::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            FileKind::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            FileKind::Ole => "application/octet-stream",
        }
    }

    /// Shown in the browser (PDF, images); the others are downloaded.
    pub fn inline(self) -> bool {
        matches!(self, FileKind::Pdf | FileKind::Png | FileKind::Jpeg)
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            FileKind::Pdf => "PDF",
            FileKind::Ofd => "OFD 版式文件",
            FileKind::Png => "PNG 图片",
            FileKind::Jpeg => "JPEG 图片",
            FileKind::Docx => "Word 文档",
            FileKind::Xlsx => "Excel 表格",
            FileKind::Ole => "Office 文档（旧格式）",
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The kind of a file from its first bytes, or, refused, what it seems to be (in Chinese).
pub fn sniff(head: &[u8]) -> Result<FileKind, &'static str> {
    if head.starts_with(b"%PDF-") {
        return Ok(FileKind::Pdf);
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(FileKind::Png);
    }
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(FileKind::Jpeg);
    }
    if head.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        return Ok(FileKind::Ole);
    }
    if head.starts_with(b"PK\x03\x04") {
        // The local headers come first, so the entries' names are in the head.
        if contains(head, b"OFD.xml") {
            return Ok(FileKind::Ofd);
        }
        if contains(head, b"word/") {
            return Ok(FileKind::Docx);
        }
        if contains(head, b"xl/") {
            return Ok(FileKind::Xlsx);
        }
        return Err("ZIP 压缩包（不是 OFD、Word 或 Excel 文档）");
    }
    if head.starts_with(b"MZ") {
        return Err("Windows 可执行程序");
    }
    if head.starts_with(b"\x7fELF") {
        return Err("Linux 可执行程序");
    }
    if head.starts_with(&[0xCF, 0xFA, 0xED, 0xFE]) || head.starts_with(&[0xCA, 0xFE, 0xBA, 0xBE]) {
        return Err("macOS 可执行程序");
    }
    if head.starts_with(b"#!") {
        return Err("脚本");
    }
    Err("无法识别的文件类型")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_the_bytes_not_the_name() {
        assert_eq!(sniff(b"%PDF-1.7\n"), Ok(FileKind::Pdf));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nxxxx"), Ok(FileKind::Png));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Ok(FileKind::Jpeg));
        assert_eq!(
            sniff(b"PK\x03\x04....word/document.xml"),
            Ok(FileKind::Docx)
        );
        assert_eq!(sniff(b"PK\x03\x04....xl/workbook.xml"), Ok(FileKind::Xlsx));
        assert_eq!(sniff(b"PK\x03\x04....OFD.xml"), Ok(FileKind::Ofd));
        assert_eq!(sniff(b"MZ\x90\x00"), Err("Windows 可执行程序"));
        assert!(sniff(b"PK\x03\x04....evil.exe").is_err());
        assert!(sniff(b"hello").is_err());
        for k in ["pdf", "ofd", "png", "jpeg", "docx", "xlsx", "ole"] {
            assert_eq!(FileKind::from_code(k).map(FileKind::code), Some(k));
        }
    }
}
