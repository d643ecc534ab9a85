//! What a remembered customer costs: resident memory per customer in the in-process store, and the
//! bytes of the value kept in Redis, for customers with a typical history (3 conversations on two
//! channels, 1–2 intents each) and with a full one (32 conversations of 4 intents).
//!
//!     cargo run --release --example customer_memory
use std::time::Duration;

use handoff::customers::Pseudonyms;
use handoff::policy::customer::{Contacted, CustomerState, MAX_CONTACTS, MAX_INTENTS};
use handoff::policy::MemoryStore;

const INTENTS: [&str; 6] = [
    "refund_return",
    "order_status",
    "billing_payment",
    "complaint",
    "technical_issue",
    "product_inquiry",
];

/// A customer with `contacts` conversations of `intents` intents each, a day apart.
fn remember(
    state: &mut CustomerState,
    names: &Pseudonyms,
    customer: usize,
    contacts: usize,
    intents: usize,
) {
    for c in 0..contacts {
        for i in 0..intents {
            let conversation = names.conversation(&format!("conv-{customer}-{c}"));
            let channel = if c % 2 == 0 { "web" } else { "wechat" };
            let topic = Some(INTENTS[(customer + c + i) % INTENTS.len()]);
            let now = 1_800_000_000 + (c as i64) * 86_400 + i as i64;
            state.observe(
                Contacted {
                    conversation,
                    decision: rand::random(),
                    channel,
                    topic,
                    now,
                },
                30 * 86_400,
                14_400,
            );
        }
    }
    let last = *state.decisions.back().expect("a decision was made");
    state.feedback(last, 4, "human", 1_800_000_000);
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

fn main() {
    let names = Pseudonyms::new(b"an example key of enough bytes..");
    let n = 100_000;
    for (label, contacts, intents) in [
        ("typical (3 contacts, 2 intents)", 3, 2),
        ("full (32 contacts, 4 intents)", MAX_CONTACTS, MAX_INTENTS),
    ] {
        let before = resident_bytes();
        let store = MemoryStore::<CustomerState>::new(Duration::from_secs(30 * 86_400), n);
        let mut json = 0usize;
        for customer in 0..n {
            let key = names.customer(&format!("customer-{customer}"));
            store
                .update_now(&key, &mut |s| {
                    remember(s, &names, customer, contacts, intents);
                    json += serde_json::to_vec(&*s).map_or(0, |v| v.len());
                })
                .unwrap();
        }
        let grown = resident_bytes().saturating_sub(before);
        // A full shard drops its least recently seen customer: count those kept.
        let kept = store.len();
        println!(
            "{label}: {:.0} bytes resident per customer in memory ({kept} customers kept, {:.0} MiB), {:.0} bytes per value in Redis",
            grown as f64 / kept as f64,
            grown as f64 / (1 << 20) as f64,
            json as f64 / n as f64,
        );
        drop(store);
    }
}
