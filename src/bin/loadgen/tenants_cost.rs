//! `tenants-cost`: what serving many tenants costs. Two servers from the same build, one without
//! tenants and one with `n` tenants (each with its own policy file, reloaded on its own), take turns
//! at peak Route load, the second's calls spread over every tenant; prints both and the ratio.

use std::path::PathBuf;

use crate::decision_log::{in_turns, ready, spawn_with};
use crate::Rpc;

pub async fn run(
    concurrency: usize,
    seconds: u64,
    workers: usize,
    connections: usize,
    tenants: u16,
) -> anyhow::Result<()> {
    let scratch: PathBuf =
        std::env::temp_dir().join(format!("handoff-tenants-cost-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let mut config = String::new();
    for t in 0..tenants {
        let policy = scratch.join(format!("t{t}.toml"));
        std::fs::write(&policy, handoff::policy::config::BUILTIN)?;
        config.push_str(&format!(
            "[[tenants]]\nname = \"t{t}\"\npolicy_file = \"{}\"\n\n",
            policy.display()
        ));
    }
    let many = scratch.join("tenants.toml");
    std::fs::write(&many, config)?;
    let servers = [
        spawn_with(&[], workers)?,
        spawn_with(&["--config".as_ref(), many.as_os_str()], workers)?,
    ];
    let clients = [
        ready(&servers[0].addr, connections).await?,
        ready(&servers[1].addr, connections).await?,
    ];
    println!(
        "\ntenants cost: Route, {concurrency} in flight, no tenants and {tenants} tenants in turns, {seconds} s each, twice"
    );
    let phases = [
        ("no tenants".to_string(), Rpc::Route),
        (format!("{tenants} tenants"), Rpc::RouteTenants(tenants)),
    ];
    let [none, many] = in_turns(&clients, &phases, concurrency, seconds).await;
    println!(
        "  throughput, {tenants} tenants / none: {many:.1} / {none:.1} = {:.1} % ({:+.1} %)",
        100.0 * many / none,
        100.0 * (many / none - 1.0)
    );
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
