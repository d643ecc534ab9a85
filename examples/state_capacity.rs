//! The in-process conversation store at capacity: what a turn of a new conversation costs when
//! every shard is full (100,000 conversations kept), so one must be evicted to make room.
//!
//!     cargo run --release --example state_capacity
use std::time::{Duration, Instant};
fn main() {
    let store: handoff::policy::MemoryStore =
        handoff::policy::state::MemoryStore::new(Duration::from_secs(3600), 100_000);
    for i in 0..100_000 {
        store
            .update_now(&format!("warm{i}"), &mut |s| s.turns += 1)
            .unwrap();
    }
    let n = 50_000;
    let t = Instant::now();
    for i in 0..n {
        store
            .update_now(&format!("new{i}"), &mut |s| s.turns += 1)
            .unwrap();
    }
    let per = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    println!(
        "new conversation at capacity: {per:.2} us per update ({} kept)",
        store.len()
    );
}
