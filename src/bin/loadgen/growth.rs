//! Cost growth: what a message costs as it gets longer, and what a stored conversation costs in
//! memory.

use std::time::{Duration, Instant};

use handoff::model::Model;
use handoff::policy::{Channel, MemoryStore, Policy, Turn};

/// Token counts the cost table reports.
pub const LENGTHS: [usize; 4] = [8, 32, 64, 128];

/// Mixed zh/en customer text to cut messages of a given length from.
const LONG: &str = "你好，我上周五在你们官网下了一个订单，订单号是A20231108，付款成功了但是到现在还没有发货，\
    I already contacted support twice and nobody answered my emails, 客服电话也一直打不通，\
    我需要这个东西下周出差用，如果周一之前到不了我就要退款了，另外我的账户里还显示扣了两次钱，\
    please check the payment as well and tell me when the refund arrives, 真的很着急，麻烦尽快处理，\
    谢谢你们，希望这次能有人认真看一下我的问题，不要再让我等了，我已经等了整整一个星期";

/// For each length in `LENGTHS`, a text that tokenises to about that many tokens once the load
/// generator's counter is appended (the counter adds about 3), and tract's time for it alone at
/// batch 1 on one thread (ms, median of 20 runs).
pub fn texts_by_length(model: &Model) -> anyhow::Result<Vec<(usize, &'static str, f64)>> {
    let chars: Vec<char> = LONG.chars().collect();
    let mut out = Vec::new();
    for &want in &LENGTHS {
        let mut end = 1;
        while end < chars.len() {
            let text: String = chars[..end].iter().collect();
            if model.encode(&format!("{text} 12345"))?.ids.len() >= want {
                break;
            }
            end += 1;
        }
        let text: &'static str =
            Box::leak(chars[..end].iter().collect::<String>().into_boxed_str());
        let encoded = model.encode(&format!("{text} 12345"))?;
        let mut times: Vec<f64> = (0..21)
            .map(|_| {
                let t = Instant::now();
                model
                    .run(&[&encoded])
                    .map(|_| t.elapsed().as_secs_f64() * 1000.0)
            })
            .collect::<Result<_, _>>()?;
        times.sort_by(f64::total_cmp);
        out.push((encoded.ids.len(), text, times[times.len() / 2]));
    }
    Ok(out)
}

/// Resident bytes per stored conversation in the default in-process store: `n` conversations,
/// each holding its full window of recent turns (real embeddings), measured as the growth of this
/// process's resident memory.
pub fn memory_per_conversation(model: &Model, n: usize) -> anyhow::Result<f64> {
    let texts = [
        "我的订单到哪了",
        "where is my refund",
        "转人工",
        "the app keeps crashing",
    ];
    let preds = model.classify(&texts)?;
    let policy = Policy::builtin();
    let before = resident_bytes();
    let store = MemoryStore::new(Duration::from_secs(3600), n);
    for c in 0..n {
        let conversation = format!("conversation-{c}");
        for turn in 0..handoff::policy::state::RECENT_TURNS {
            let k = (c + turn) % preds.len();
            let message_id = format!("m{turn}");
            let t = Turn {
                message_id: &message_id,
                channel: Channel::Web,
                ..handoff::route::turn(model, &preds[k], texts[k])
            };
            policy.route_in_memory(&store, &conversation, &t);
        }
    }
    let grown = resident_bytes().saturating_sub(before);
    drop(store);
    Ok(grown as f64 / n as f64)
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
