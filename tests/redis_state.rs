//! Conversation state shared through a real Redis (Debian's redis-server, started here on a free port):
//! two replicas decide like one, a replica restart loses nothing, and a Redis outage degrades
//! decisions instead of failing them.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::redis::{fleet_config, Redis, RedisCluster, SentinelSet};
use common::Server;
use handoff::grpc::pb::{self, Action, RouteRequest, RouteResponse};

async fn route(server: &Server, conversation: &str, message_id: &str, text: &str) -> RouteResponse {
    let mut client = common::client(server).await;
    client
        .route(RouteRequest {
            conversation_id: conversation.into(),
            message_id: message_id.into(),
            text: text.into(),
            channel: pb::Channel::Wechat as i32,
            tier: pb::CustomerTier::Standard as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// Turns whose decisions depend on the conversation so far: a paraphrased repeat, then the offer ladder.
const TURNS: [&str; 4] = [
    "我的订单到哪了",
    "我的快递到哪了",
    "气死我了，什么破服务[怒]",
    "太差劲了，真的很生气[怒]",
];

/// `TURNS` as one conversation, sent to `first` and `second` in turn (the same server twice: one
/// process alone).
async fn turns(first: &Server, second: &Server, conversation: &str) -> Vec<RouteResponse> {
    let mut replies = Vec::new();
    for (i, text) in TURNS.iter().enumerate() {
        let replica = if i % 2 == 0 { first } else { second };
        replies.push(route(replica, conversation, &format!("m{i}"), text).await);
    }
    replies
}

fn summary(r: &RouteResponse) -> (Action, String) {
    (
        r.action(),
        r.reasons
            .first()
            .map(|x| x.rule_id.clone())
            .unwrap_or_default(),
    )
}

/// State over TLS (`rediss://`), the server verified against `state_tls_ca`: two replicas share a
/// conversation as over plain TCP; a replica without that CA does not trust the server and decides
/// from the message alone.
#[tokio::test]
async fn state_over_tls_is_shared_and_the_server_is_verified() {
    let certs = common::dev_certs("redis-tls");
    let file = |name: &str| certs.join(name).display().to_string();
    let port = common::free_port();
    let _redis = Redis::start_with(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &file("server.pem"),
            "--tls-key-file",
            &file("server.key"),
            "--tls-ca-cert-file",
            &file("ca.pem"),
            "--tls-auth-clients",
            "no",
        ],
    );
    let url = format!("rediss://127.0.0.1:{port}");
    let ca = format!("state_tls_ca={}", file("ca.pem"));
    let a = Server::start(&["--state", &url, "--set", &ca]);
    let b = Server::start(&["--state", &url, "--set", &ca]);
    let mut fleet = Vec::new();
    for r in turns(&a, &b, "over-tls").await {
        assert!(
            !r.reasons.iter().any(|x| x.rule_id == "state_unavailable"),
            "{:?}",
            r.reasons
        );
        fleet.push(r.action());
    }
    assert_eq!(
        fleet,
        [
            Action::ContinueBot,
            Action::OfferHuman,
            Action::OfferHuman,
            Action::Escalate
        ],
        "the repeat and the offer ladder need the shared state"
    );
    let untrusting = Server::start(&["--state", &url]);
    let mut client = common::client(&untrusting).await;
    decided_without_state(&mut client, "over-tls-2", "m0", TURNS[0]).await;
}

/// Two deployments on one Redis with their own `state_key_prefix`: the same conversation id is two
/// conversations, and every key of each starts with its prefix.
#[tokio::test]
async fn deployments_sharing_a_redis_keep_apart_by_key_prefix() {
    let redis = Redis::start(common::free_port());
    let shop = Server::start(&["--state", &redis.url(), "--set", "state_key_prefix=shop"]);
    let bank = Server::start(&["--state", &redis.url(), "--set", "state_key_prefix=bank"]);
    // The paraphrased repeat is offered a person only where the first question was asked.
    route(&shop, "same-id", "m0", TURNS[0]).await;
    let on_shop = route(&shop, "same-id", "m1", TURNS[1]).await;
    assert_eq!(
        on_shop.action(),
        Action::OfferHuman,
        "{:?}",
        on_shop.reasons
    );
    let on_bank = route(&bank, "same-id", "m1", TURNS[1]).await;
    assert_eq!(
        on_bank.action(),
        Action::ContinueBot,
        "{:?}",
        on_bank.reasons
    );
    let keys = |pattern: &str| {
        let out = Command::new("redis-cli")
            .args([
                "-p",
                &redis.port.to_string(),
                "--scan",
                "--pattern",
                pattern,
            ])
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(keys("shop:conv:*"), 1);
    assert_eq!(keys("bank:conv:*"), 1);
    assert_eq!(keys("handoff:*"), 0, "nothing under the default prefix");
}

#[tokio::test]
async fn two_replicas_decide_like_one_and_a_restart_loses_nothing() {
    let redis = Redis::start(common::free_port());
    let a = Server::start(&["--state", &redis.url()]);
    let mut b = Server::start(&["--state", &redis.url()]);

    let alone: Vec<_> = turns(&a, &a, "solo").await.iter().map(summary).collect();
    let fleet: Vec<_> = turns(&a, &b, "fleet").await.iter().map(summary).collect();
    assert_eq!(
        fleet, alone,
        "alternating replicas must decide like one process"
    );
    let actions: Vec<_> = alone.iter().map(|(a, _)| *a).collect();
    assert_eq!(
        actions,
        [
            Action::ContinueBot,
            Action::OfferHuman,
            Action::OfferHuman,
            Action::Escalate
        ]
    );

    // Kill replica B outright and start a new one: the conversation continues where it was.
    drop(std::mem::replace(
        &mut b,
        Server::start(&["--state", &redis.url()]),
    ));
    let next = route(&b, "fleet", "m9", "垃圾，烦死了[怒]").await;
    assert_eq!(
        summary(&next),
        (Action::Escalate, "already_escalated".to_string()),
        "state survived the restart: the customer is still waiting for a person"
    );
}

/// Route one message with a 1 s deadline: it is answered (not DEADLINE_EXCEEDED), decided from the
/// message alone (`state_unavailable`).
async fn decided_without_state(
    client: &mut pb::handoff_client::HandoffClient<tonic::transport::Channel>,
    conversation: &str,
    message_id: &str,
    text: &str,
) {
    let mut req = tonic::Request::new(RouteRequest {
        conversation_id: conversation.into(),
        message_id: message_id.into(),
        text: text.into(),
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(1));
    let r = client.route(req).await.unwrap().into_inner();
    assert!(
        r.reasons.iter().any(|x| x.rule_id == "state_unavailable"),
        "{:?}",
        r.reasons
    );
}

#[tokio::test]
async fn a_redis_outage_degrades_decisions_and_sharing_resumes_after() {
    let port = common::free_port();
    let redis = Redis::start(port);
    let server = Server::start(&["--state", &redis.url()]);
    route(&server, "outage", "m1", "我的订单到哪了").await;

    drop(redis);
    let during = route(&server, "outage", "m2", "转人工").await;
    assert_eq!(
        during.action(),
        Action::Escalate,
        "decisions continue from the message alone"
    );
    assert!(
        during
            .reasons
            .iter()
            .any(|r| r.rule_id == "state_unavailable"),
        "{:?}",
        during.reasons
    );
    assert!(server.metrics().contains("handoff_state_errors_total 1"));

    // Calls with deadlines while Redis is down are answered from the message alone, not
    // DEADLINE_EXCEEDED: the store fails fast while it is known to be down, and a probe of a
    // refused port fails at once.
    let mut client = common::client(&server).await;
    for i in 0..10 {
        let text = format!("第{i}次：我的订单到哪了");
        decided_without_state(&mut client, "outage", &format!("short{i}"), &text).await;
    }

    let _redis = Redis::start(port); // a fresh, empty Redis on the same address
                                     // Sharing resumes once the store probes Redis again (at most half a second after it failed).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut n = 0;
    loop {
        n += 1;
        let after = route(&server, "outage", &format!("m3-{n}"), "我的订单到哪了").await;
        if after
            .reasons
            .iter()
            .all(|r| r.rule_id != "state_unavailable")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", after.reasons);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let repeat = route(&server, "outage", "m4", "我的快递到哪了").await;
    assert_eq!(
        summary(&repeat),
        (Action::OfferHuman, "repeated_question".to_string()),
        "state is shared again"
    );
}

/// A Redis that accepts connections and never answers: the state store gets what is left of the
/// caller's deadline (less time to answer), not its own much longer timeout, so the call is
/// answered from the message alone within its deadline.
#[tokio::test]
async fn a_redis_that_never_answers_costs_the_state_not_the_answer() {
    // Connections complete in the kernel's backlog; nothing ever reads or answers them.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let server = Server::start(&["--state", &url, "--set", "state_timeout_ms=60000"]);
    let mut client = common::client(&server).await;
    // A 1 s deadline, far below the store's 60 s timeout: an answer at all shows it bounded the store.
    for i in 0..2 {
        decided_without_state(&mut client, "silent", &format!("m{i}"), "我的订单到哪了").await;
    }
    drop(silent);
}

/// State another writer left unreadable or out of range is repaired, said in the decision and
/// counted, never used as it is.
#[tokio::test]
async fn unreadable_or_out_of_range_state_is_repaired_and_reported() {
    let redis = Redis::start(common::free_port());
    let server = Server::start(&["--state", &redis.url()]);
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut set = |id: &str, raw: &str| {
        redis::cmd("SET")
            .arg(format!("handoff:conv:{id}"))
            .arg(raw)
            .query::<()>(&mut con)
            .unwrap();
    };
    set("garbage", "not json at all");
    set("negative", r#"{"turns": -3, "offers_made": 1}"#);
    set(
        "huge",
        r#"{"turns": 2, "negativity_avg": 5.0, "consecutive_negative": 4000000000, "offers_made": 99}"#,
    );
    // Keys no replica wrote: a 17 MB value and a 10,000-entry list.
    redis::cmd("SET")
        .arg("handoff:conv:oversized")
        .arg(vec![b'x'; 17 << 20])
        .query::<()>(&mut con)
        .unwrap();
    redis::cmd("RPUSH")
        .arg("handoff:conv:listed")
        .arg((0..10_000).collect::<Vec<i32>>())
        .query::<()>(&mut con)
        .unwrap();
    let state_reason = |r: &RouteResponse| {
        r.reasons
            .iter()
            .find(|x| x.rule_id == "state_reset")
            .map(|x| x.detail.clone())
    };
    for (id, want) in [
        ("garbage", "unreadable"),
        ("negative", "unreadable"),
        ("huge", "out of range"),
        ("oversized", "larger than any state"),
        ("listed", "not a value"),
    ] {
        let r = route(&server, id, "m1", "我的订单到哪了").await;
        let detail = state_reason(&r).unwrap_or_else(|| panic!("{id}: no state_reset in {r:?}"));
        assert!(detail.contains(want), "{id}: {detail}");
        if want != "out of range" {
            // Started afresh: a calm question stays with the bot.
            assert_eq!(r.action(), Action::ContinueBot, "{id}: {r:?}");
        }
        // The repaired state was written back: the next turn is clean.
        let next = route(&server, id, "m2", "谢谢").await;
        assert_eq!(state_reason(&next), None, "{id}: {next:?}");
    }
    // Reset to a state of ours: a string of a few KiB.
    for id in ["oversized", "listed"] {
        let key = format!("handoff:conv:{id}");
        let kind: String = redis::cmd("TYPE").arg(&key).query(&mut con).unwrap();
        let len: usize = redis::cmd("STRLEN").arg(&key).query(&mut con).unwrap();
        assert_eq!(kind, "string", "{id}");
        assert!(len < 16 << 10, "{id}: {len} bytes");
    }
    let metrics = server.metrics();
    assert!(
        metrics.contains("handoff_state_repairs_total{repair=\"unreadable\"} 2"),
        "{metrics}"
    );
    for repair in ["oversized", "wrong_type"] {
        assert!(
            metrics.contains(&format!(
                "handoff_state_repairs_total{{repair=\"{repair}\"}} 1"
            )),
            "{metrics}"
        );
    }
    assert!(
        metrics.contains("handoff_state_repairs_total{repair=\"clamped\"} 1"),
        "{metrics}"
    );
}

/// Turns of one conversation arriving at once on two replicas: every turn a replica recorded is in
/// the stored state (compare-and-set, retried on conflict), and a turn that could not be recorded
/// says so (`state_unavailable`) instead of being lost silently.
#[tokio::test]
async fn concurrent_turns_on_two_replicas_lose_no_update() {
    let redis = Redis::start(common::free_port());
    let a = Server::start(&["--state", &redis.url()]);
    let b = Server::start(&["--state", &redis.url()]);
    let (ca, cb) = (common::client(&a).await, common::client(&b).await);
    let calls: Vec<_> = (0..24)
        .map(|i| {
            let mut client = if i % 2 == 0 { ca.clone() } else { cb.clone() };
            tokio::spawn(async move {
                client
                    .route(RouteRequest {
                        conversation_id: "busy".into(),
                        message_id: format!("m{i}"),
                        text: format!("第{i}次问：我的订单到哪了"),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
            })
        })
        .collect();
    let mut recorded = 0;
    for call in calls {
        let r = call.await.unwrap();
        if r.reasons.iter().all(|x| x.rule_id != "state_unavailable") {
            recorded += 1;
        }
    }
    let state = stored_state(&redis, "busy");
    let turns = state["turns"].as_u64().unwrap();
    // Every turn a reply called recorded is stored (a write that landed just as its deadline
    // passed is stored but reported unavailable: hence >=, never fewer).
    assert!(
        turns >= recorded && turns <= 24,
        "{turns} stored, {recorded} reported: {state}"
    );
    assert!(turns >= 12, "most turns recorded: {turns} of 24");
}

async fn route_with(server: &Server, req: RouteRequest) -> RouteResponse {
    let mut client = common::client(server).await;
    client.route(req).await.unwrap().into_inner()
}

fn message(conversation: &str, message_id: &str, text: &str) -> RouteRequest {
    RouteRequest {
        conversation_id: conversation.into(),
        message_id: message_id.into(),
        text: text.into(),
        channel: pb::Channel::Web as i32,
        ..Default::default()
    }
}

/// The lifecycle (waiting after an escalation, hand-back, declined offers, a withdrawn request) and retries decide the
/// same when the turns alternate between two replicas sharing Redis as in one process.
#[tokio::test]
async fn lifecycle_and_retries_hold_across_two_replicas() {
    let redis = Redis::start(common::free_port());
    let a = Server::start(&["--state", &redis.url()]);
    let b = Server::start(&["--state", &redis.url()]);
    let angry = "THIS IS RIDICULOUS, you charged me twice and nobody fixes it!! 😡";
    let script: Vec<(RouteRequest, Action, &str)> = vec![
        (
            message("life", "m0", "转人工"),
            Action::Escalate,
            "explicit_request",
        ),
        (
            message("life", "m1", "在吗"),
            Action::Escalate,
            "already_escalated",
        ),
        (
            message("life", "m1", "在吗"),
            Action::Escalate,
            "already_escalated",
        ),
        (
            message("life", "m2", "hello?"),
            Action::Escalate,
            "already_escalated",
        ),
        (
            RouteRequest {
                handed_back: true,
                ..message("life", "m3", "谢谢，没事了")
            },
            Action::ContinueBot,
            "default",
        ),
        (message("life", "m4", angry), Action::OfferHuman, ""),
        (
            RouteRequest {
                declined_offer: true,
                ..message("life", "m5", "no thanks, I'll keep trying here")
            },
            Action::ContinueBot,
            "",
        ),
        (
            message("life", "m6", angry),
            Action::ContinueBot,
            "offer_declined",
        ),
        (
            message("life", "m7", "转人工"),
            Action::Escalate,
            "explicit_request",
        ),
        (
            message("life", "m8", "算了 不用转人工了 我自己看看"),
            Action::ContinueBot,
            "escalation_withdrawn",
        ),
        (
            message("life", "m9", "在吗"),
            Action::ContinueBot,
            "default",
        ),
    ];
    let mut first_ids = std::collections::HashMap::new();
    for (i, (req, action, rule)) in script.into_iter().enumerate() {
        let replica = if i % 2 == 0 { &a } else { &b };
        let id = req.message_id.clone();
        let r = route_with(replica, req).await;
        assert_eq!(r.action(), action, "turn {i}: {:?}", r.reasons);
        if !rule.is_empty() {
            assert_eq!(r.reasons[0].rule_id, rule, "turn {i}");
        }
        let first = first_ids.entry(id).or_insert_with(|| r.decision_id.clone());
        assert_eq!(
            &r.decision_id, first,
            "turn {i}: a retry keeps its decision id"
        );
        assert_eq!(r.retry, i == 2, "turn {i}");
    }
    let state = stored_state(&redis, "life");
    assert_eq!(state["turns"], 10, "the retry counted nothing: {state}");
    assert_eq!(state["escalations"], 2, "{state}");
}

/// The same message sent eight times at once to two replicas: one decision, eight times.
#[tokio::test]
async fn concurrent_retries_on_two_replicas_get_one_decision() {
    let redis = Redis::start(common::free_port());
    let a = Server::start(&["--state", &redis.url()]);
    let b = Server::start(&["--state", &redis.url()]);
    let (ca, cb) = (common::client(&a).await, common::client(&b).await);
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let mut client = if i % 2 == 0 { ca.clone() } else { cb.clone() };
            tokio::spawn(async move {
                let req = message("dup", "m0", "气死了，你们扣了我两次钱！！");
                client.route(req).await.unwrap().into_inner()
            })
        })
        .collect();
    let mut replies = Vec::new();
    for call in calls {
        replies.push(call.await.unwrap());
    }
    let recorded: Vec<_> = replies
        .iter()
        .filter(|r| r.reasons.iter().all(|x| x.rule_id != "state_unavailable"))
        .collect();
    assert!(recorded.len() >= 6, "{} recorded", recorded.len());
    let first = recorded
        .iter()
        .find(|r| !r.retry)
        .expect("one first answer");
    for r in &recorded {
        assert_eq!(
            (&r.decision_id, r.action(), &r.reasons),
            (&first.decision_id, first.action(), &first.reasons)
        );
    }
    assert_eq!(recorded.iter().filter(|r| !r.retry).count(), 1);
    let state = stored_state(&redis, "dup");
    assert_eq!(state["turns"], 1, "{state}");
}

/// A conversation's state as the servers stored it in Redis.
fn stored_state(redis: &Redis, conversation: &str) -> serde_json::Value {
    let raw: String = redis::cmd("GET")
        .arg(format!("handoff:conv:{conversation}"))
        .query(
            &mut redis::Client::open(redis.url())
                .unwrap()
                .get_connection()
                .unwrap(),
        )
        .unwrap();
    serde_json::from_str(&raw).unwrap()
}

/// 64 distinct turns of one conversation at once, on one replica and on two: every turn is stored.
/// The turns queue for the conversation one after another: a test build on a loaded machine needs
/// more than the default 200 ms for 64 of them, and this is about lost updates, not speed.
#[tokio::test]
async fn sixty_four_concurrent_turns_of_one_conversation_are_all_stored() {
    let redis = Redis::start(common::free_port());
    let args = ["--state", &redis.url(), "--set", "state_timeout_ms=5000"];
    let a = Server::start(&args);
    let b = Server::start(&args);
    let (ca, cb) = (common::client(&a).await, common::client(&b).await);
    for (conversation, replicas) in [("one-replica", 1), ("two-replicas", 2)] {
        let calls: Vec<_> = (0..64)
            .map(|i| {
                let mut client = if i % replicas == 0 {
                    ca.clone()
                } else {
                    cb.clone()
                };
                tokio::spawn(async move {
                    let req = message(
                        conversation,
                        &format!("m{i}"),
                        &format!("第{i}个问题：订单到哪了"),
                    );
                    client.route(req).await.unwrap().into_inner()
                })
            })
            .collect();
        for call in calls {
            let r = call.await.unwrap();
            assert!(
                r.reasons.iter().all(|x| x.rule_id != "state_unavailable"),
                "{conversation}: {:?}",
                r.reasons
            );
        }
        assert_eq!(
            stored_state(&redis, conversation)["turns"],
            64,
            "{conversation}"
        );
    }
}

/// Customer memory through Redis: a contact on one replica is history on the other, the key is the
/// customer's keyed hash with the retention as its TTL, and ForgetCustomer on any replica removes it.
#[tokio::test]
async fn customer_memory_is_shared_by_replicas_and_forgotten_everywhere() {
    let redis = Redis::start(common::free_port());
    let args = [
        "--state",
        &redis.url(),
        "--set",
        "customers.key=shared fleet key",
    ];
    let (a, b) = (Server::start(&args), Server::start(&args));
    let customer = "dana +1 555 0100";
    let contact = |conversation: &str, channel: pb::Channel| RouteRequest {
        conversation_id: conversation.into(),
        customer_id: customer.into(),
        text: "我上周申请的退款到现在还没到账".into(),
        channel: channel as i32,
        ..Default::default()
    };
    let first = route_with(&a, contact("dana-web", pb::Channel::Web)).await;
    assert_eq!(first.action(), Action::ContinueBot);
    let second = route_with(&b, contact("dana-app", pb::Channel::App)).await;
    assert_eq!(second.action(), Action::OfferHuman, "{:?}", second.reasons);
    assert_eq!(second.reasons[0].rule_id, "repeat_contact");

    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("handoff:cust:*")
        .query(&mut con)
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        !keys[0].contains("dana") && !keys[0].contains("555"),
        "{keys:?}"
    );
    let ttl: i64 = redis::cmd("TTL").arg(&keys[0]).query(&mut con).unwrap();
    assert!(
        (29 * 24 * 3600..=30 * 24 * 3600).contains(&ttl),
        "the 30-day retention as the key's TTL: {ttl}"
    );
    let stored: String = redis::cmd("GET").arg(&keys[0]).query(&mut con).unwrap();
    assert!(!stored.contains("dana"), "{stored}");

    let mut client = common::client(&b).await;
    let forgotten = client
        .forget_customer(pb::ForgetCustomerRequest {
            customer_id: customer.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(forgotten.forgotten);
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("handoff:cust:*")
        .query(&mut con)
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    let after = route_with(&a, contact("dana-chat", pb::Channel::Web)).await;
    assert!(
        after.reasons.iter().all(|r| r.rule_id != "repeat_contact"),
        "{:?}",
        after.reasons
    );

    // A replica on the same Redis without the fleet's key keeps no memory (it could neither read
    // it back after a restart nor delete it) and says so.
    let keyless = Server::start(&["--state", &redis.url()]);
    let before: Vec<String> = redis::cmd("KEYS")
        .arg("handoff:cust:*")
        .query(&mut con)
        .unwrap();
    let decided = route_with(&keyless, contact("dana-x", pb::Channel::Web)).await;
    let off = decided
        .reasons
        .iter()
        .find(|r| r.rule_id == "customer_unavailable")
        .unwrap_or_else(|| panic!("{:?}", decided.reasons));
    assert!(off.detail.contains("[customers] key"), "{}", off.detail);
    let after: Vec<String> = redis::cmd("KEYS")
        .arg("handoff:cust:*")
        .query(&mut con)
        .unwrap();
    assert_eq!(after, before, "nothing written without the key");
}

fn feedback(decision_id: &str, needed: pb::HumanNeeded) -> pb::FeedbackRequest {
    pb::FeedbackRequest {
        decision_id: decision_id.into(),
        human_needed: needed as i32,
        ..Default::default()
    }
}

async fn send(server: &Server, f: pb::FeedbackRequest) -> Result<bool, tonic::Code> {
    let mut client = common::client(server).await;
    client
        .feedback(f)
        .await
        .map(|r| r.into_inner().recorded)
        .map_err(|s| s.code())
}

/// Feedback on any replica, after restarts: decision ids are signed with the fleet's key, and the
/// fleet's record of feedback in Redis spots duplicates and conflicts whichever replica each reaches.
#[tokio::test]
async fn feedback_is_taken_on_any_replica_and_after_restarts() {
    use pb::HumanNeeded::{Needed, NotNeeded};
    let redis = Redis::start(common::free_port());
    let (config_a, config_b) = (
        fleet_config("fa", &redis.url()),
        fleet_config("fb", &redis.url()),
    );
    let a = Server::start(&["--config", config_a.to_str().unwrap()]);
    let mut b = Server::start(&["--config", config_b.to_str().unwrap()]);
    let decided = route(&a, "fleet-feedback", "m1", "转人工").await;
    let other = route(&a, "fleet-feedback-2", "m1", "你好").await;
    // Decided on A, told on B: taken; the same again on A: a duplicate; different on B: refused.
    assert_eq!(
        send(&b, feedback(&decided.decision_id, Needed)).await,
        Ok(true)
    );
    assert_eq!(
        send(&a, feedback(&decided.decision_id, Needed)).await,
        Ok(false)
    );
    assert_eq!(
        send(&b, feedback(&decided.decision_id, NotNeeded)).await,
        Err(tonic::Code::AlreadyExists)
    );
    // Every replica restarts: what was recorded stays recorded, what was not is still taken.
    drop(a);
    drop(std::mem::replace(
        &mut b,
        Server::start(&["--config", config_b.to_str().unwrap()]),
    ));
    assert_eq!(
        send(&b, feedback(&decided.decision_id, Needed)).await,
        Ok(false)
    );
    assert_eq!(
        send(&b, feedback(&other.decision_id, NotNeeded)).await,
        Ok(true)
    );
    // An id shaped like ours that no replica of this fleet signed is unknown.
    let mut bytes = *uuid::Uuid::parse_str(&decided.decision_id)
        .unwrap()
        .as_bytes();
    bytes[15] ^= 1;
    let forged = uuid::Uuid::from_bytes(bytes).to_string();
    assert_eq!(
        send(&b, feedback(&forged, Needed)).await,
        Err(tonic::Code::NotFound)
    );
    // A replica sharing the Redis without the fleet's settings is refused at start.
    let mut lone = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["serve", "--state", &redis.url(), "--set"])
        .arg(format!(
            "decision_log.dir={}",
            std::env::temp_dir().join("handoff-lone").display()
        ))
        .args(["--grpc-addr", &format!("127.0.0.1:{}", common::free_port())])
        .args([
            "--metrics-addr",
            &format!("127.0.0.1:{}", common::free_port()),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = lone.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut lone.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("decision_log.conversation_salt"), "{err}");
}

/// The active version on `server`, and the fleet it sees.
async fn model_status(server: &Server) -> pb::ModelStatus {
    let mut admin = common::admin(server).await;
    admin
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn active(s: &pb::ModelStatus) -> String {
    s.active
        .as_ref()
        .map_or(String::new(), |m| m.version.clone())
}

/// Poll until `server` serves `version` (a replica loads and warms a package on its own).
async fn until_serving(server: &Server, version: &str) -> pb::ModelStatus {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = model_status(server).await;
        if active(&status) == version {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "never moved to {version}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// ActivateModel and Rollback on one replica move every replica sharing the Redis; a replica
/// restarted afterwards comes back on the fleet's model; GetStatus shows the fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_operations_move_every_replica_and_a_restart_joins_the_fleet() {
    let redis = Redis::start(common::free_port());
    // A policy naming only intents both shipped packages have, so 1.0.0 may serve.
    let shared = common::shared_intents_policy();
    let policy =
        std::env::temp_dir().join(format!("handoff-fleet-policy-{}.toml", std::process::id()));
    std::fs::write(&policy, shared).unwrap();
    let url = redis.url();
    let args = [
        "--state",
        url.as_str(),
        "--policy",
        policy.to_str().unwrap(),
        "--set",
        "fleet_poll_ms=200",
    ];
    let a = Server::start(&args);
    let mut b = Server::start(&args);
    assert_eq!(active(&model_status(&b).await), common::default_version());

    let mut admin_a = common::admin(&a).await;
    admin_a
        .activate_model(pb::ActivateModelRequest {
            name: "handoff-zh-en".into(),
            version: "1.0.0".into(),
        })
        .await
        .unwrap();
    until_serving(&b, "1.0.0").await;
    // One call shows the fleet: both replicas, both on 1.0.0, both at the latest operation.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let fleet = model_status(&a).await.fleet;
        let on_new = fleet
            .iter()
            .filter(|r| {
                r.active.as_ref().is_some_and(|m| m.version == "1.0.0") && r.error.is_empty()
            })
            .count();
        if on_new == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fleet never showed both: {fleet:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // B restarts: it comes back on the fleet's model, not its configured one.
    drop(std::mem::replace(&mut b, Server::start(&args)));
    assert_eq!(active(&model_status(&b).await), "1.0.0");

    // Rollback on B (which joined after the activation and has no previous of its own) goes back
    // to the fleet's previous model, on every replica.
    let mut admin_b = common::admin(&b).await;
    let rolled = admin_b
        .rollback(pb::RollbackRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(active(&rolled), common::default_version());
    until_serving(&a, common::default_version()).await;
}

/// Conversation state in a Redis Cluster: two replicas decide like one, conversations spread over
/// the masters, and killing a master degrades the turns it held until its replica takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_shares_state_and_recovers_after_a_master_fails() {
    let mut cluster = RedisCluster::start(3);
    let url = cluster.url();
    let a = Server::start(&["--state", &url]);
    let b = Server::start(&["--state", &url]);
    let alone: Vec<_> = turns(&a, &a, "cl-solo").await.iter().map(summary).collect();
    let fleet: Vec<_> = turns(&a, &b, "cl-fleet")
        .await
        .iter()
        .map(summary)
        .collect();
    assert_eq!(
        fleet, alone,
        "alternating replicas must decide like one process"
    );
    assert_eq!(alone.last().unwrap().0, Action::Escalate);
    for i in 0..30 {
        let r = route(&a, &format!("spread-{i}"), "m1", "我的订单到哪了").await;
        assert!(decided_with_state(&r), "{:?}", r.reasons);
    }
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "{masters:?}");
    let holding = masters
        .iter()
        .filter(|p| !cluster.keys_on(**p).is_empty())
        .count();
    assert!(
        holding >= 2,
        "conversations spread over the masters: {holding}"
    );

    // A master dies: turns on its slots are decided from the message alone until its replica takes
    // over, then with state again (what the failed master held since the last sync may be lost).
    let victim = masters[0];
    cluster.kill(victim);
    let start = Instant::now();
    let (mut degraded, mut recovered) = (0, false);
    while start.elapsed() < Duration::from_secs(60) {
        let mut all_state = true;
        for i in 0..30 {
            let r = route(
                &a,
                &format!("spread-{i}"),
                &format!("after-{}", start.elapsed().as_millis()),
                "在吗",
            )
            .await;
            if !decided_with_state(&r) {
                degraded += 1;
                all_state = false;
            }
        }
        if all_state {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "cluster failover: {degraded} turns decided without state, recovered after {:.1} s",
        start.elapsed().as_secs_f64()
    );
    if !recovered {
        let log = a.log_text();
        let tail: Vec<&str> = log.lines().rev().take(8).collect();
        println!(
            "nodes:\n{}\nlog tail:\n{}",
            cluster.info(masters[1], "nodes"),
            tail.join("\n")
        );
    }
    assert!(recovered, "state never came back after the failover");
}

fn decided_with_state(r: &RouteResponse) -> bool {
    r.reasons.iter().all(|x| x.rule_id != "state_unavailable")
}

/// State through Redis Sentinel (`redis+sentinel://`): two replicas share conversations on the master
/// Sentinel names; when that master dies, turns are decided from the message alone until Sentinel
/// promotes the replica, then with state again, without a restart or a config change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_names_the_master_and_a_failover_is_followed() {
    let mut set = SentinelSet::start();
    let url = set.url();
    let a = Server::start(&["--state", &url]);
    let b = Server::start(&["--state", &url]);
    let alone: Vec<_> = turns(&a, &a, "sn-solo").await.iter().map(summary).collect();
    let fleet: Vec<_> = turns(&a, &b, "sn-fleet")
        .await
        .iter()
        .map(summary)
        .collect();
    assert_eq!(fleet, alone, "alternating replicas decide like one process");
    assert_eq!(alone.last().unwrap().0, Action::Escalate);
    let on_master = Command::new("redis-cli")
        .args([
            "-p",
            &set.master_port.to_string(),
            "exists",
            "handoff:conv:sn-fleet",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&on_master.stdout).trim(), "1");

    // The master dies: Sentinel promotes the replica (down after 1 s), and the replicas follow.
    let old_master = set.master_port;
    set.kill_master();
    let start = Instant::now();
    let mut degraded = 0;
    let mut n = 0;
    let mut recovered = [false; 2];
    while start.elapsed() < Duration::from_secs(60) && recovered != [true; 2] {
        for (i, server) in [&a, &b].into_iter().enumerate() {
            n += 1;
            let r = route(server, "sn-after", &format!("m{n}"), "在吗").await;
            recovered[i] = decided_with_state(&r);
            degraded += usize::from(!recovered[i]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered_after = start.elapsed().as_secs_f64();
    println!("sentinel failover: {degraded} turns decided without state, state back after {recovered_after:.1} s");
    assert_eq!(
        recovered, [true; 2],
        "state never came back after the failover"
    );
    assert!(degraded > 0, "the master was down for a while");
    let master = set.sentinel_says("get-master-addr-by-name");
    assert!(
        master.contains(&set.replica.port.to_string()) && !master.contains(&old_master.to_string()),
        "{master}"
    );
}
