//! Customer memory over real gRPC with the in-process store: a repeat contact about the same thing
//! is offered a person on its first turn, the history follows the customer across channels, a low
//! CSAT sends the next escalation to the senior queue, ForgetCustomer leaves nothing, memory expires
//! with its retention, and the customer id itself is written nowhere. (Through a shared Redis:
//! `tests/redis_state.rs`.)

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Server;
use handoff::grpc::pb::handoff_client::HandoffClient;
use handoff::grpc::pb::{
    self, Action, FeedbackRequest, ForgetCustomerRequest, HumanNeeded, RouteRequest, RouteResponse,
};
use tonic::transport::Channel;

/// Plain ids with a phone number in them: none may reach a log.
const ANNA: &str = "anna +86 138 0013 8000";
const BO: &str = "bo +86 139 0013 9000";
const CHEN: &str = "chen +86 137 0013 7000";

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("handoff-customers-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn route(
    client: &mut HandoffClient<Channel>,
    customer: &str,
    conversation: &str,
    channel: pb::Channel,
    text: &str,
) -> RouteResponse {
    client
        .route(RouteRequest {
            conversation_id: conversation.into(),
            customer_id: customer.into(),
            text: text.into(),
            channel: channel as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

fn rules(r: &RouteResponse) -> Vec<&str> {
    r.reasons.iter().map(|x| x.rule_id.as_str()).collect()
}

/// Every line of the decision log files under `dir`, as JSON.
fn logged_decisions(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("decisions-") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                out.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    out
}

fn all_text_under(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect()
}

// Two threads: the client's connection must see the server's GOAWAY while this one waits for the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_is_remembered_across_conversations_and_channels_and_forgotten_on_request() {
    let dir = temp_dir("memory");
    let (logs, audit) = (dir.join("decisions"), dir.join("audit.jsonl"));
    let config = dir.join("handoff.toml");
    std::fs::write(
        &config,
        format!(
            "audit_log = \"{}\"\n[decision_log]\ndir = \"{}\"\n[customers]\nkey = \"a test fleet key of 32 bytes....\"\n",
            audit.display(),
            logs.display()
        ),
    )
    .unwrap();
    let mut server = Server::start(&["--config", config.to_str().unwrap()]);
    let mut client = common::client(&server).await;
    use pb::Channel::{Web, Wechat};

    // Anna asks about her refund on the web: a first contact, the bot answers.
    let first = route(
        &mut client,
        ANNA,
        "anna-1",
        Web,
        "我上周申请的退款到现在还没到账",
    )
    .await;
    assert_eq!(first.action(), Action::ContinueBot, "{:?}", rules(&first));
    // Back the same day on WeChat about the same refund: a person at once, with priority 7.
    let again = route(
        &mut client,
        ANNA,
        "anna-2",
        Wechat,
        "退款还没收到，怎么回事",
    )
    .await;
    assert_eq!(again.action(), Action::OfferHuman, "{:?}", rules(&again));
    assert_eq!(rules(&again)[0], "repeat_contact");
    assert_eq!(again.priority, 7);
    // The same message from a customer with no history (or none named) stays with the bot.
    let stranger = route(
        &mut client,
        "",
        "nobody-1",
        Wechat,
        "退款还没收到，怎么回事",
    )
    .await;
    assert_eq!(
        stranger.action(),
        Action::ContinueBot,
        "{:?}",
        rules(&stranger)
    );
    // The offer is made once per conversation: the next turn is the bot's again.
    let next = route(&mut client, ANNA, "anna-2", Wechat, "退款到底什么时候到").await;
    assert!(
        !rules(&next).contains(&"repeat_contact"),
        "{:?}",
        rules(&next)
    );

    // Bo was escalated and rated it 1: his next escalation goes to the senior queue.
    let asked = route(&mut client, BO, "bo-1", Web, "转人工").await;
    assert_eq!(
        (asked.action(), asked.queue.as_str()),
        (Action::Escalate, "general")
    );
    let rated = client
        .feedback(FeedbackRequest {
            decision_id: asked.decision_id.clone(),
            human_needed: HumanNeeded::Needed as i32,
            csat: 1,
            customer_id: BO.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(rated.recorded);
    let back = route(&mut client, BO, "bo-2", Web, "我要找人工客服").await;
    assert_eq!(
        (back.action(), back.queue.as_str()),
        (Action::Escalate, "senior")
    );
    // Someone else asking the same is not; and feedback naming Chen on Bo's decision does not reach
    // Chen's memory (a decision's feedback only reaches the customer it was made for).
    let other = route(&mut client, CHEN, "chen-1", Web, "我要找人工客服").await;
    assert_eq!(other.queue, "general");
    let misdirected = client
        .feedback(FeedbackRequest {
            decision_id: back.decision_id.clone(),
            human_needed: HumanNeeded::Needed as i32,
            csat: 1,
            customer_id: CHEN.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(misdirected.recorded, "the feedback itself is logged");
    let chen_again = route(&mut client, CHEN, "chen-2", Web, "我要找人工客服").await;
    assert_eq!(chen_again.queue, "general");

    // Forget Anna: her next contact about the refund starts from nothing.
    let forgotten = client
        .forget_customer(ForgetCustomerRequest {
            customer_id: ANNA.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(forgotten.forgotten);
    // Feedback on one of her old decisions arriving after that brings nothing back.
    let late = client
        .feedback(FeedbackRequest {
            decision_id: again.decision_id.clone(),
            human_needed: HumanNeeded::Needed as i32,
            csat: 2,
            customer_id: ANNA.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(late.recorded);
    let fresh = route(&mut client, ANNA, "anna-3", Web, "退款还没收到，怎么回事").await;
    assert!(
        !rules(&fresh).contains(&"repeat_contact"),
        "{:?}",
        rules(&fresh)
    );
    let blank = client
        .forget_customer(ForgetCustomerRequest {
            customer_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(blank.code(), tonic::Code::InvalidArgument);
    assert!(
        blank.message().contains("customer_id"),
        "{}",
        blank.message()
    );

    // Drain: every decision and audit record reaches the disk.
    drop(client);
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)).success());

    // The decision log keeps the history signals each decision read (for replay), never the id.
    let decisions = logged_decisions(&logs);
    let anna2 = decisions
        .iter()
        .find(|d| d["decision_id"] == again.decision_id.as_str())
        .expect("logged");
    let signals = &anna2["signals"];
    assert_eq!(signals["known_customer"], true, "{signals}");
    assert_eq!(signals["contacts_7d"], 1, "{signals}");
    assert_eq!(signals["same_intent_contacts_3d"], 1, "{signals}");
    assert_eq!(
        signals["channel_switch"], true,
        "web, then WeChat within 4 h: {signals}"
    );
    let bo2 = decisions
        .iter()
        .find(|d| d["decision_id"] == back.decision_id.as_str())
        .expect("logged");
    assert_eq!(bo2["signals"]["last_csat"], 1);
    assert_eq!(bo2["signals"]["escalations_30d"], 1);
    let anna3 = decisions
        .iter()
        .find(|d| d["decision_id"] == fresh.decision_id.as_str())
        .expect("logged");
    assert_eq!(
        anna3["signals"]["contacts_7d"],
        serde_json::Value::Null,
        "forgotten: no history"
    );
    assert_eq!(
        anna3["signals"]["last_csat"],
        serde_json::Value::Null,
        "the late CSAT was not kept"
    );
    let everything = all_text_under(&logs) + &std::fs::read_to_string(&audit).unwrap();
    for id in [ANNA, BO, CHEN] {
        assert!(!everything.contains(id), "{id} written in plain");
        assert!(!everything.contains("138 0013"), "a phone number written");
    }
    // The audit log says who forgot whom, under the pseudonym.
    let forget = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["event"] == "forget_customer")
        .expect("ForgetCustomer audited");
    assert_eq!(forget["result"]["forgotten"], true);
    assert_eq!(
        forget["customer"].as_str().map(str::len),
        Some(32),
        "{forget}"
    );

    // Replaying the log under the same policy decides every turn the same: history included.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["replay", "--log", logs.to_str().unwrap()])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("; 0 change"),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn memory_is_forgotten_after_its_retention() {
    let server = Server::start(&["--set", "customers.retention_s=2"]);
    let mut client = common::client(&server).await;
    let text = "我上周申请的退款到现在还没到账";
    route(&mut client, ANNA, "r-1", pb::Channel::Web, text).await;
    let soon = route(&mut client, ANNA, "r-2", pb::Channel::Web, text).await;
    assert_eq!(
        rules(&soon)[0],
        "repeat_contact",
        "remembered within the retention"
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let later = route(&mut client, ANNA, "r-3", pb::Channel::Web, text).await;
    assert!(
        !rules(&later).contains(&"repeat_contact"),
        "{:?}",
        rules(&later)
    );
}
