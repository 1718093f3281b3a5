//! What the event hash chain (`shenpi_adapters::store::chain`) says about an instance, in Chinese:
//! for the dossier and for `shenpi audit verify`, written here once.

use shenpi_adapters::store::chain::{BrokenEvent, ChainFault, ChainReport};

use super::super::chrome::datetime;

/// What failed at the first event that is not intact.
pub fn fault_zh(f: &ChainFault) -> String {
    match f {
        ChainFault::HashMismatch => "内容与记录的哈希不符（该事件在写入后被改动）".to_string(),
        ChainFault::MissingPredecessor { expected } => {
            format!("前一事件缺失（应有第 {expected} 号事件，已不在记录中）")
        }
        ChainFault::LinkMismatch => {
            "所记前一事件的哈希与前一事件不符（前一事件被改动或替换）".to_string()
        }
        ChainFault::Unchained => "没有哈希（未入链，或哈希被删除）".to_string(),
        ChainFault::HeadMismatch { recorded } => format!(
            "链头不符（实例记录共 {recorded} 条事件，链头哈希与最后一条不符：末尾的事件被删除或改动）"
        ),
    }
}

/// The event named: its number, and its kind and time when it is still stored.
pub fn event_zh(b: &BrokenEvent) -> String {
    match (&b.kind, b.recorded_at) {
        (Some(kind), Some(at)) => format!("第 {} 号事件（{kind}，{}）", b.seq, datetime(at)),
        (Some(kind), None) => format!("第 {} 号事件（{kind}）", b.seq),
        _ => format!("第 {} 号事件（已不在记录中）", b.seq),
    }
}

/// One line: whether the chain is intact, and if not where it breaks and why.
pub fn report_zh(r: &ChainReport) -> String {
    match &r.broken {
        None => format!("事件链完整（共 {} 条事件）", r.events),
        Some(b) => format!("事件链断裂：{}{}", event_zh(b), fault_zh(&b.fault)),
    }
}
