//! `shenpi workflows export DIR`: the latest published version of every workflow in the
//! database, written back as files, so that an office can keep its rules in version control.
//!
//! The database holds what is published (the editor's versions included); a file written here
//! and put back under `workflows/` is recognised at start as that version, not republished.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use shenpi_adapters::store::{DefinitionRow, DefinitionStore};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Write the latest published version of every workflow in the database to DIR, one
    /// `<file>.yaml` each (the file it was seeded from, else `<workflow id>.yaml`).
    Export {
        /// The folder to write to (created if missing).
        dir: PathBuf,
        #[arg(long, default_value_t = super::server::default_db())]
        db: String,
    },
}

/// The file name a version is written to: the name of the file it came from when it came from
/// one, else its workflow id. Only a plain `*.yaml` name is accepted from the database, so that
/// nothing is written outside the folder.
pub fn file_name(row: &DefinitionRow) -> String {
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !s.starts_with('.')
    };
    if let Some(p) = row.source_path.as_deref()
        && row.source.as_deref() == Some("file")
        && let Some(name) = Path::new(p).file_name().and_then(|n| n.to_str())
        && plain(name)
        && (name.ends_with(".yaml") || name.ends_with(".yml"))
    {
        return name.to_string();
    }
    let id: String = row
        .workflow_id
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{id}.yaml")
}

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    let Command::Export { dir, db } = c;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let db = super::server::existing_db(&db).await?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let ids = db.workflow_ids().await?;
        if ids.is_empty() {
            eprintln!("数据库中没有已发布的流程规则。");
        }
        for id in ids {
            let Some(row) = db.latest_definition(&id).await? else {
                continue;
            };
            let path = dir.join(file_name(&row));
            std::fs::write(&path, &row.yaml)
                .with_context(|| format!("cannot write {}", path.display()))?;
            let from = match (row.source.as_deref(), row.published_by.as_deref()) {
                (Some("file"), _) => format!("文件 {}", row.source_path.unwrap_or_default()),
                (Some("editor"), by) => format!("编辑器 · {}", by.unwrap_or("")),
                (Some("api"), by) => format!("接口 · {}", by.unwrap_or("")),
                _ => "来源未记录".to_string(),
            };
            println!("{}\t{id} v{}（{from}）", path.display(), row.version);
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(source: Option<&str>, path: Option<&str>, id: &str) -> DefinitionRow {
        DefinitionRow {
            workflow_id: id.into(),
            version: 1,
            yaml: String::new(),
            hash: String::new(),
            published_at: 0,
            source: source.map(str::to_string),
            source_path: path.map(str::to_string),
            published_by: None,
        }
    }

    #[test]
    fn files_keep_their_name_and_nothing_leaves_the_folder() {
        assert_eq!(
            file_name(&row(Some("file"), Some("provincial-major.yaml"), "pm")),
            "provincial-major.yaml"
        );
        assert_eq!(file_name(&row(Some("editor"), None, "pm")), "pm.yaml");
        // A stored path pointing elsewhere keeps only its plain name.
        assert_eq!(
            file_name(&row(Some("file"), Some("../../etc/x.yaml"), "pm")),
            "x.yaml"
        );
        assert_eq!(
            file_name(&row(Some("file"), Some("../.."), "pm")),
            "pm.yaml"
        );
        assert_eq!(file_name(&row(None, None, "a/b")), "a_b.yaml");
    }
}
