//! `shenpi audit verify`: recomputes the event hash chain of every instance (or one) in the
//! database and says, in Chinese, whether each is intact, naming the first event that is not
//! (`shenpi_adapters::store::chain`). Exit status 1 when any chain is broken.

use std::process::ExitCode;

use shenpi_web::server::dossier::chain::report_zh;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Recompute the event hash chains; print per instance whether it is intact.
    Verify {
        #[arg(long, default_value_t = super::server::default_db())]
        db: String,
        /// Only this instance (default: every instance).
        #[arg(long)]
        instance: Option<String>,
    },
}

/// Instances read per page when checking all of them.
const PAGE: i64 = 500;

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    let Command::Verify { db, instance } = c;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let db = super::server::existing_db(&db).await?;
        let (mut checked, mut broken) = (0u64, 0u64);
        let mut check = async |id: &str| -> anyhow::Result<bool> {
            let Some(r) = db.verify_chain(id).await? else {
                return Ok(false);
            };
            checked += 1;
            if !r.intact() {
                broken += 1;
            }
            println!("{id}：{}", report_zh(&r));
            Ok(true)
        };
        match &instance {
            Some(id) => {
                if !check(id).await? {
                    anyhow::bail!("没有编号为 {id} 的办理实例");
                }
            }
            None => {
                let mut after = String::new();
                loop {
                    let ids = db.instance_ids(&after, PAGE).await?;
                    let Some(last) = ids.last().cloned() else {
                        break;
                    };
                    for id in &ids {
                        check(id).await?;
                    }
                    after = last;
                }
            }
        }
        println!(
            "共检查 {checked} 个办理实例：{} 个完整，{broken} 个事件链断裂。",
            checked - broken
        );
        Ok(if broken > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    })
}
