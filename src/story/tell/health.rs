//! PoWA's own health: history too short for the regression baseline, snapshots stalled.
//!
//! The English advice is the analyzer's own; the Chinese one is written here, so that a
//! Chinese report does not switch language for its most important line.

use super::{Lead, Told};
use crate::render::format::duration_ms;

pub(super) fn tell(l: &Lead<'_>, t: &mut Told) -> Option<String> {
    let (zh, server) = (l.lang.is_zh(), &l.server);
    match l.i.rule.as_str() {
        "powa_health.retention" => {
            let (ret, need) = (l.m("retention_ms")?, l.m("needed_retention_ms")?);
            let (ret, need) = (duration_ms(ret), duration_ms(need));
            if zh {
                t.advice = Some(
                    "这台服务器无法发现回归：调大它的保留时间（powa_configure_server / powa.retention），或调小 analysis.baseline_offset。"
                        .to_string(),
                );
            }
            Some(if zh {
                format!("{server}：PoWA 只保留 {ret} 的历史，回归检测的基线需要 {need}")
            } else {
                format!(
                    "{server}: PoWA keeps {ret} of history, the regression baseline needs {need}"
                )
            })
        }
        "powa_health.stale" => {
            let age = l.m("snapshot_age_ms").filter(|a| *a < 1e15)?;
            if let Some(f) = l.m("frequency_ms") {
                t.numbers.push(if zh {
                    format!("快照间隔 {}", duration_ms(f))
                } else {
                    format!("snapshots every {}", duration_ms(f))
                });
            }
            if zh {
                t.advice = Some(
                    "检查 powa-collector（远程服务器）或 powa 后台进程（本地）是否在运行、能否连上该服务器；其日志和 powa_snapshot_metas.errors 会说明原因。在此之前，这台服务器的其他结论都不可信。"
                        .to_string(),
                );
            }
            Some(if zh {
                format!("{server}：PoWA 已有 {} 没有采集快照", duration_ms(age))
            } else {
                format!(
                    "{server}: PoWA has not snapshotted it for {}",
                    duration_ms(age)
                )
            })
        }
        _ => None,
    }
}
