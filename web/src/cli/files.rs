//! `shenpi files sweep`: removes the material files no `material_supplied` event names and that
//! were stored more than N days ago (`shenpi_adapters::store::files::FileStore::sweep`), and says
//! in Chinese what it removes (hash, size, where) and the total. A command refused after its
//! files were stored, or a server killed in between, leaves such content: nobody can see it, but
//! it takes space. Exit status 1 when some content could not be removed because it is in a files
//! directory that was not given.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use shenpi_adapters::store::files::{FileStore, Place, Swept, SweptFile};
use shenpi_web::server::chrome::datetime;
use shenpi_web::server::files::size_zh;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Remove material files no event names, stored more than N days ago; print each and the
    /// total.
    Sweep {
        #[arg(long, default_value_t = super::server::default_db())]
        db: String,
        /// The files directory the servers store into (`serve --file-dir`): without it, content
        /// kept there is listed but not removed.
        #[arg(long)]
        file_dir: Option<PathBuf>,
        /// Only content stored (or last uploaded again) more than this many days ago. At least
        /// 1: an upload stores its files before the command that names them.
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u16).range(1..))]
        older_than_days: u16,
        /// List what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

const DAY_MS: i64 = 24 * 3600 * 1000;

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    let Command::Sweep {
        db,
        file_dir,
        older_than_days,
        dry_run,
    } = c;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let db = super::server::existing_db(&db).await?;
        let store = match &file_dir {
            None => FileStore::in_database(db),
            Some(dir) => FileStore::existing_directory(db, dir).await.with_context(|| {
                format!(
                    "{} 不是服务器存放材料文件的目录（serve --file-dir 所用的目录）",
                    dir.display()
                )
            })?,
        };
        let cutoff = jiff::Timestamp::now().as_millisecond() - i64::from(older_than_days) * DAY_MS;
        println!(
            "{}未被任何事件引用、且在 {} 之前（{older_than_days} 天前）存入的材料文件：",
            if dry_run { "试运行，列出" } else { "清理" },
            datetime(cutoff)
        );
        let (mut removed, mut bytes, mut again, mut skipped) = (0u64, 0u64, 0u64, 0u64);
        let sweep = store
            .sweep(cutoff, dry_run, |f| {
                println!("{}", line_zh(f, dry_run));
                match f.outcome {
                    Swept::Removed => {
                        removed += 1;
                        bytes += u64::try_from(f.file.size).unwrap_or(0);
                    }
                    Swept::UploadedAgain => again += 1,
                    Swept::NoDirectory => skipped += 1,
                }
            })
            .await
            .with_context(|| {
                format!("清理中止（已删除 {removed} 个文件，{}）", bytes_zh(bytes))
            })?;
        let total = bytes_zh(bytes);
        if dry_run {
            println!("试运行：共 {removed} 个文件可删除，合计 {total}；未删除任何文件。");
        } else {
            println!("共删除 {removed} 个文件，合计 {total}。");
        }
        println!("被事件引用的文件 {} 个，均保留。", sweep.referenced);
        if again > 0 {
            println!("{again} 个文件在清理期间又被上传，已保留。");
        }
        if skipped > 0 {
            println!(
                "{skipped} 个文件存放在文件目录中，未处理：请用 --file-dir 指明服务器的文件目录后再运行。"
            );
            return Ok(ExitCode::from(1));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// One file: what was done, its hash, size, where it is and when it was stored.
fn line_zh(f: &SweptFile, dry_run: bool) -> String {
    let place = match (f.place, &f.path) {
        (Place::Database, _) => "数据库".to_string(),
        (Place::Directory, Some(path)) => format!("文件 {}", path.display()),
        (Place::Directory, None) => "文件目录（未指明）".to_string(),
    };
    let what = match f.outcome {
        Swept::Removed if dry_run => "将删除",
        Swept::Removed => "已删除",
        Swept::UploadedAgain => "保留（清理期间又被上传）",
        Swept::NoDirectory => "跳过（未指明文件目录）",
    };
    format!(
        "{what} {}  {}  {place}  存入于 {}",
        f.file.sha256,
        bytes_zh(u64::try_from(f.file.size).unwrap_or(0)),
        datetime(f.file.stored_at)
    )
}

/// A size as people read it, with the exact bytes beside a rounded one.
fn bytes_zh(n: u64) -> String {
    if n < 1024 {
        size_zh(n)
    } else {
        format!("{}（{n} 字节）", size_zh(n))
    }
}
