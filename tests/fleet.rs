//! A fleet: three replicas sharing a real Redis Cluster (six `redis-server` processes in cluster
//! mode), called through client-side round robin, every call to the next replica and a failed call
//! sent again to the one after (Route is idempotent per message id, so a retry is safe).
//!
//! One scenario, in order: whole conversations spread over the replicas decide as the scenario
//! table says one replica does; the fleet's throughput; Feedback through the balancer (all taken,
//! duplicates and conflicts spotted fleet-wide); a replica killed mid-load (no accepted call lost);
//! a Redis master killed mid-load (turns degrade, then recover after the failover); ActivateModel
//! through the balancer moves every replica; every replica restarted comes back on the new model and
//! still takes feedback on decisions made before. The figures are printed (README "A fleet").

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::redis::{fleet_config, RedisCluster};
use common::scenarios::scenarios;
use common::Server;
use handoff::grpc::pb::handoff_client::HandoffClient;
use handoff::grpc::pb::{self, FeedbackRequest, HumanNeeded, RouteRequest, RouteResponse};
use tonic::transport::Channel;

const REPLICAS: usize = 3;
/// Concurrent callers during the load phases.
const CALLERS: usize = 8;

/// Round robin over the replicas' endpoints. A replica that is down is found by its calls failing:
/// the call goes to the next replica, and the failed one is skipped for a while (as a balancer's
/// outlier ejection does).
struct Balancer {
    clients: Mutex<Vec<HandoffClient<Channel>>>,
    /// Until when each replica is skipped.
    ejected: Mutex<Vec<Option<Instant>>>,
    next: AtomicUsize,
    /// Attempts that failed and were sent again to another replica.
    retried: AtomicUsize,
}

impl Balancer {
    async fn new(servers: &[Server]) -> Balancer {
        let mut clients = Vec::new();
        for s in servers {
            // Lazy: a replica that is down costs a failed call, not the balancer.
            clients.push(HandoffClient::new(
                Channel::from_shared(s.endpoint()).unwrap().connect_lazy(),
            ));
        }
        Balancer {
            ejected: Mutex::new(vec![None; clients.len()]),
            clients: Mutex::new(clients),
            next: AtomicUsize::new(0),
            retried: AtomicUsize::new(0),
        }
    }

    /// A replica came back on another port.
    fn replace(&self, i: usize, server: &Server) {
        self.clients.lock().unwrap()[i] = HandoffClient::new(
            Channel::from_shared(server.endpoint())
                .unwrap()
                .connect_lazy(),
        );
        self.ejected.lock().unwrap()[i] = None;
    }

    /// The next replica not ejected (any, if all are).
    fn pick(&self) -> (usize, HandoffClient<Channel>) {
        let now = Instant::now();
        let ejected = self.ejected.lock().unwrap().clone();
        let mut i = self.next.fetch_add(1, Ordering::Relaxed) % REPLICAS;
        for _ in 0..REPLICAS {
            if ejected[i].is_none_or(|until| until <= now) {
                break;
            }
            i = self.next.fetch_add(1, Ordering::Relaxed) % REPLICAS;
        }
        (i, self.clients.lock().unwrap()[i].clone())
    }

    fn eject(&self, i: usize) {
        self.ejected.lock().unwrap()[i] = Some(Instant::now() + Duration::from_millis(500));
    }

    /// Route through the fleet: on a failure that says nothing was decided for sure (a replica
    /// down or dying), the same request again on the next replica, a few times.
    async fn route(&self, req: RouteRequest) -> Result<RouteResponse, tonic::Status> {
        let mut last = None;
        for _ in 0..2 * REPLICAS {
            let mut request = tonic::Request::new(req.clone());
            request.set_timeout(Duration::from_secs(5));
            let (i, mut client) = self.pick();
            match client.route(request).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if retryable(&s) => {
                    self.eject(i);
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    last = Some(s);
                }
                Err(s) => return Err(s),
            }
        }
        Err(last.expect("attempted"))
    }

    async fn feedback(&self, req: FeedbackRequest) -> Result<bool, tonic::Code> {
        self.pick()
            .1
            .feedback(req)
            .await
            .map(|r| r.into_inner().recorded)
            .map_err(|s| s.code())
    }
}

fn retryable(s: &tonic::Status) -> bool {
    use tonic::Code::*;
    matches!(
        s.code(),
        Unavailable | Unknown | Cancelled | DeadlineExceeded | ResourceExhausted | Internal
    )
}

fn decided_with_state(r: &RouteResponse) -> bool {
    r.reasons.iter().all(|x| x.rule_id != "state_unavailable")
}

/// What CALLERS callers achieved in a load phase.
#[derive(Default, Debug)]
struct Load {
    answered: usize,
    /// Calls with no answer after every retry.
    lost: usize,
    degraded: usize,
    /// Since the phase started: the last turn decided without state.
    last_degraded: Option<Duration>,
    elapsed: Duration,
}

/// CALLERS callers, each sending 5-turn conversations through the balancer until `stop`.
async fn load(balancer: &Arc<Balancer>, tag: &str, stop: Arc<AtomicBool>) -> Load {
    const TEXTS: [&str; 5] = [
        "我的订单到哪了",
        "where is my parcel, order 5521",
        "还没收到，怎么回事",
        "can I change the delivery address?",
        "好的谢谢",
    ];
    let started = Instant::now();
    let result = Arc::new(Mutex::new(Load::default()));
    let mut callers = Vec::new();
    for c in 0..CALLERS {
        let (balancer, stop, result, tag) = (
            balancer.clone(),
            stop.clone(),
            result.clone(),
            tag.to_string(),
        );
        callers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let req = RouteRequest {
                    conversation_id: format!("{tag}-{c}-{}", n / TEXTS.len()),
                    message_id: format!("m{}", n % TEXTS.len()),
                    text: TEXTS[n % TEXTS.len()].into(),
                    ..Default::default()
                };
                n += 1;
                let reply = balancer.route(req).await;
                let mut r = result.lock().unwrap();
                match reply {
                    Ok(reply) => {
                        r.answered += 1;
                        if !decided_with_state(&reply) {
                            r.degraded += 1;
                            r.last_degraded = Some(started.elapsed());
                        }
                    }
                    Err(_) => r.lost += 1,
                }
            }
        }));
    }
    for c in callers {
        c.await.unwrap();
    }
    let mut r = std::mem::take(&mut *result.lock().unwrap());
    r.elapsed = started.elapsed();
    r
}

/// Run a load phase for `seconds`, doing `fault` after `fault_after`.
async fn load_with(
    balancer: &Arc<Balancer>,
    tag: &str,
    seconds: f64,
    fault_after: f64,
    fault: impl FnOnce(),
) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn({
        let (balancer, stop, tag) = (balancer.clone(), stop.clone(), tag.to_string());
        async move { load(&balancer, &tag, stop).await }
    });
    tokio::time::sleep(Duration::from_secs_f64(fault_after)).await;
    fault();
    tokio::time::sleep(Duration::from_secs_f64(seconds - fault_after)).await;
    stop.store(true, Ordering::Relaxed);
    running.await.unwrap()
}

fn replica_args(config: &std::path::Path, policy: &std::path::Path) -> Vec<String> {
    vec![
        "--config".into(),
        config.display().to_string(),
        "--policy".into(),
        policy.display().to_string(),
        "--set".into(),
        "fleet_poll_ms=200".into(),
    ]
}

fn start(args: &[String]) -> Server {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&args)
}

async fn status(server: &Server) -> pb::ModelStatus {
    common::admin(server)
        .await
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn version(m: &Option<pb::ModelRef>) -> &str {
    m.as_ref().map_or("", |m| m.version.as_str())
}

/// Poll `server` until its status is `active` with `shadow` ("": none).
async fn until_serving(server: &Server, active: &str, shadow: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = status(server).await;
        if version(&s.active) == active && version(&s.shadow) == shadow {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never moved to {active} (shadow {shadow:?}): {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The replica the balancer would send the next call to.
fn next<'s>(balancer: &Balancer, servers: &'s [Server]) -> &'s Server {
    &servers[balancer.next.fetch_add(1, Ordering::Relaxed) % REPLICAS]
}

fn feedback(decision_id: &str, needed: HumanNeeded) -> FeedbackRequest {
    FeedbackRequest {
        decision_id: decision_id.into(),
        human_needed: needed as i32,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_behind_round_robin_decides_as_one_and_survives_its_faults() {
    let mut cluster = RedisCluster::start(3);
    let url = cluster.url();
    // A policy naming only intents both shipped packages have, so 1.0.0 may serve.
    let policy: PathBuf =
        std::env::temp_dir().join(format!("handoff-fleet-test-{}.toml", std::process::id()));
    std::fs::write(&policy, common::shared_intents_policy()).unwrap();
    let args: Vec<Vec<String>> = (0..REPLICAS)
        .map(|i| replica_args(&fleet_config(&format!("rr{i}"), &url), &policy))
        .collect();
    let mut servers: Vec<Server> = args.iter().map(|a| start(a)).collect();
    let balancer = Arc::new(Balancer::new(&servers).await);

    // 1. Whole conversations, each turn on the next replica, decide as on one replica alone.
    let mut solo = common::client(&servers[0]).await;
    let mut decisions = Vec::new();
    let mut wrong = Vec::new();
    let mut turns = 0;
    for (n, (name, steps)) in scenarios().into_iter().enumerate() {
        for (i, s) in steps.iter().enumerate() {
            let spread = balancer
                .route(s.request(&format!("fleet-{n}")))
                .await
                .unwrap();
            let alone = solo
                .route(s.request(&format!("alone-{n}")))
                .await
                .unwrap()
                .into_inner();
            let outcome = |r: &RouteResponse| {
                let rule = r
                    .reasons
                    .first()
                    .map_or(String::new(), |r| r.rule_id.clone());
                (r.action(), rule, r.queue.clone(), r.priority)
            };
            if outcome(&spread) != outcome(&alone) {
                wrong.push(format!(
                    "{name}, turn {i}: one replica {:?}, the fleet {:?}",
                    outcome(&alone),
                    outcome(&spread)
                ));
            }
            turns += 1;
            decisions.push(spread.decision_id);
        }
    }
    assert!(turns > 30, "{turns}");
    assert!(
        wrong.is_empty(),
        "spread over the fleet:\n{}",
        wrong.join("\n")
    );
    decisions.sort();
    decisions.dedup(); // a retried message is answered with its first decision

    // 2. The fleet's throughput.
    let steady = load_with(&balancer, "steady", 4.0, 0.0, || {}).await;
    assert_eq!(steady.lost, 0);
    assert_eq!(steady.degraded, 0);

    // 3. Feedback through the balancer: every decision's taken wherever it lands; sent again, a
    // duplicate; contradicted, a conflict. The second half waits until after the restarts.
    let (now, later) = decisions.split_at(decisions.len() / 2);
    for id in now {
        assert_eq!(
            balancer.feedback(feedback(id, HumanNeeded::Needed)).await,
            Ok(true)
        );
    }
    for id in now {
        assert_eq!(
            balancer.feedback(feedback(id, HumanNeeded::Needed)).await,
            Ok(false),
            "a duplicate on another replica"
        );
        assert_eq!(
            balancer
                .feedback(feedback(id, HumanNeeded::NotNeeded))
                .await,
            Err(tonic::Code::AlreadyExists),
            "a conflict on another replica"
        );
    }

    // 4. A replica killed mid-load: calls in flight on it fail and are sent again; none is lost.
    let retried_before = balancer.retried.load(Ordering::Relaxed);
    let victim = servers.pop().unwrap();
    let killed = load_with(&balancer, "replica-down", 4.0, 1.0, move || drop(victim)).await;
    let retried = balancer.retried.load(Ordering::Relaxed) - retried_before;
    assert_eq!(killed.lost, 0, "{killed:?}");
    assert!(retried > 0, "calls did reach the dead replica");
    servers.push(start(&args[REPLICAS - 1]));
    balancer.replace(REPLICAS - 1, &servers[REPLICAS - 1]);

    // 5. A Redis master killed mid-load: turns on its slots are decided from the message alone
    // until its replica takes over, then with state again.
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "{masters:?}");
    let victim = masters[0];
    let cluster_ref = &mut cluster;
    let outage = load_with(&balancer, "master-down", 10.0, 1.0, || {
        cluster_ref.kill(victim)
    })
    .await;
    assert_eq!(outage.lost, 0, "{outage:?}");
    assert!(outage.degraded > 0, "the dead master held conversations");
    let recovered_after = outage.last_degraded.unwrap().as_secs_f64() - 1.0;
    assert!(
        outage.last_degraded.unwrap() < outage.elapsed - Duration::from_secs(1),
        "state came back before the phase ended: {outage:?}"
    );

    // 6. ActivateModel and SetShadow through the balancer (each on whichever replica it picks)
    // move every replica.
    common::admin(next(&balancer, &servers))
        .await
        .activate_model(pb::ActivateModelRequest {
            name: "handoff-zh-en".into(),
            version: "1.0.0".into(),
        })
        .await
        .unwrap();
    common::admin(next(&balancer, &servers))
        .await
        .set_shadow(pb::SetShadowRequest {
            name: "handoff-zh-en".into(),
            version: "2.2.0".into(),
            share: 0.5,
        })
        .await
        .unwrap();
    for s in &servers {
        until_serving(s, "1.0.0", "2.2.0").await;
    }

    // 7. Every replica restarts: each comes back on the fleet's models, and feedback on decisions
    // made before the restarts is still taken (and the first half's is still recorded).
    let restart_started = Instant::now();
    for (i, a) in args.iter().enumerate() {
        drop(std::mem::replace(&mut servers[i], start(a)));
        balancer.replace(i, &servers[i]);
    }
    let restarts = restart_started.elapsed();
    for s in &servers {
        until_serving(s, "1.0.0", "2.2.0").await;
    }
    for id in later {
        assert_eq!(
            balancer
                .feedback(feedback(id, HumanNeeded::NotNeeded))
                .await,
            Ok(true)
        );
    }
    for id in now {
        assert_eq!(
            balancer.feedback(feedback(id, HumanNeeded::Needed)).await,
            Ok(false),
            "still recorded after the restarts"
        );
    }

    // 8. Rollback through the balancer takes every replica back; one call shows the fleet, and so
    // does the metric.
    common::admin(next(&balancer, &servers))
        .await
        .rollback(pb::RollbackRequest {})
        .await
        .unwrap();
    let default = common::default_version();
    for s in &servers {
        until_serving(s, default, "2.2.0").await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let fleet = status(next(&balancer, &servers)).await.fleet;
        let on_it = fleet
            .iter()
            .filter(|r| version(&r.active) == default && r.error.is_empty())
            .count();
        let metric = common::counter(
            &next(&balancer, &servers).metrics(),
            &format!("handoff_fleet_replicas{{version=\"{default}\"}}"),
        );
        if on_it == REPLICAS && metric == REPLICAS as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet never showed {REPLICAS} on {default}: {fleet:?}, metric {metric}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    println!(
        "fleet of {REPLICAS} replicas on a 3-master Redis Cluster, {CALLERS} callers, round robin:\n  \
         steady: {:.0} decisions/s ({} in {:.1} s), 0 lost\n  \
         replica killed at 1 s: {:.0} decisions/s, {retried} attempts failed and were sent again, {} lost\n  \
         Redis master killed at 1 s: {:.0} decisions/s, {} of {} turns decided without state, the last {recovered_after:.1} s after the kill, {} lost\n  \
         feedback: {} decisions, {} taken before and {} after every replica restarted ({:.1} s for 3 restarts), duplicates and conflicts refused on other replicas",
        steady.answered as f64 / steady.elapsed.as_secs_f64(),
        steady.answered,
        steady.elapsed.as_secs_f64(),
        killed.answered as f64 / killed.elapsed.as_secs_f64(),
        killed.lost,
        outage.answered as f64 / outage.elapsed.as_secs_f64(),
        outage.degraded,
        outage.answered,
        outage.lost,
        decisions.len(),
        now.len(),
        later.len(),
        restarts.as_secs_f64(),
    );
}
