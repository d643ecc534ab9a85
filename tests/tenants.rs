//! Several businesses on one server, over real gRPC with API keys: each tenant decides with its own
//! policy file (rules, queues, hours), keeps its own conversations, is reloaded and refused on its
//! own, is rate-limited on its own, and cannot reach another tenant; replay reads one tenant's
//! records.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Server;
use handoff::grpc::pb::handoff_client::HandoffClient;
use handoff::grpc::pb::{
    self, Action, FeedbackRequest, ForgetCustomerRequest, HumanNeeded, RouteRequest, RouteResponse,
};
use handoff::security::auth::hash_key;
use tonic::transport::Channel;
use tonic::Code;

const BUILTIN: &str = handoff::policy::config::BUILTIN;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("handoff-tenants-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The shop: the built-in rules, everything to its own queue, always open.
fn shop_policy() -> String {
    BUILTIN
        .replace("version = \"builtin-6\"", "version = \"shop-1\"")
        .replace(
            "default_queue = \"general\"",
            "default_queue = \"shop_service\"",
        )
}

/// The bank: its own queue, closed at all hours (a callback instead), and billing questions go to a
/// person at once.
fn bank_policy() -> String {
    let rules = BUILTIN.find("[[rules]]").unwrap();
    format!(
        "{}[[queues]]\nname = \"bank_desk\"\ndays = []\nopen = \"09:00\"\nclose = \"17:00\"\nfallback = \"callback\"\n\n[[rules]]\nid = \"billing_to_person\"\nwhen = \"intent == 'billing_payment' and intent_score >= 0.5\"\naction = \"escalate\"\ndetail = \"the bank's customers talk money with a person\"\n\n{}",
        &BUILTIN[..rules],
        &BUILTIN[rules..]
    )
    .replace("version = \"builtin-6\"", "version = \"bank-1\"")
    .replace("default_queue = \"general\"", "default_queue = \"bank_desk\"")
}

struct Setup {
    dir: PathBuf,
    config: PathBuf,
}

/// Three tenants (shop and bank with their own files, tiny on the server's policy with a rate
/// limit of one call every 10 s) and three keys: one each for shop and bank, one operator's.
fn setup(tag: &str, bank: &str) -> Setup {
    let dir = temp_dir(tag);
    std::fs::write(dir.join("shop.toml"), shop_policy()).unwrap();
    std::fs::write(dir.join("bank.toml"), bank).unwrap();
    let key = |name: &str, secret: &str, scopes: &str, tenant: Option<&str>| {
        let tenant = tenant.map_or(String::new(), |t| format!("tenant = \"{t}\"\n"));
        format!(
            "[[auth.api_keys]]\nname = \"{name}\"\nsha256 = \"{}\"\nscopes = [{scopes}]\n{tenant}\n",
            hash_key(secret)
        )
    };
    let all = "\"classify\", \"route\", \"feedback\", \"customers\"";
    let config = format!(
        "policy_poll_ms = 100\n\n[decision_log]\ndir = \"{logs}\"\n\n\
         [[tenants]]\nname = \"shop\"\npolicy_file = \"{shop}\"\n\n\
         [[tenants]]\nname = \"bank\"\npolicy_file = \"{bank}\"\n\n\
         [[tenants]]\nname = \"tiny\"\nrate_per_s = 0.1\nburst = 1\n\n{}{}{}{}",
        key("shop-bot", "shop-secret", all, Some("shop")),
        key("bank-bot", "bank-secret", all, Some("bank")),
        key("tiny-bot", "tiny-secret", all, Some("tiny")),
        key("ops", "ops-secret", &format!("{all}, \"admin\""), None),
        logs = dir.join("decisions").display(),
        shop = dir.join("shop.toml").display(),
        bank = dir.join("bank.toml").display(),
    );
    let path = dir.join("handoff.toml");
    std::fs::write(&path, config).unwrap();
    Setup { dir, config: path }
}

fn request<T>(message: T, secret: &str, tenant: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if !secret.is_empty() {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {secret}").parse().unwrap());
    }
    if let Some(t) = tenant {
        r.metadata_mut()
            .insert("x-handoff-tenant", t.parse().unwrap());
    }
    r
}

fn turn(conversation: &str, text: &str) -> RouteRequest {
    RouteRequest {
        conversation_id: conversation.into(),
        text: text.into(),
        channel: pb::Channel::Web as i32,
        ..Default::default()
    }
}

async fn route(
    client: &mut HandoffClient<Channel>,
    secret: &str,
    tenant: Option<&str>,
    message: RouteRequest,
) -> Result<RouteResponse, tonic::Status> {
    client
        .route(request(message, secret, tenant))
        .await
        .map(|r| r.into_inner())
}

fn replayed(log: &Path, tenant: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["replay", "--log", log.to_str().unwrap(), "--tenant", tenant])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

// Two threads: the client's connection must see the server's GOAWAY while this one waits for the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_decide_by_their_own_files_keep_apart_and_cannot_reach_each_other() {
    let s = setup("apart", &bank_policy());
    let mut server = Server::start(&["--config", s.config.to_str().unwrap()]);
    let mut client = common::client(&server).await;

    // The same words, two businesses: each decides as its file says.
    let shop = route(&mut client, "shop-secret", None, turn("c1", "转人工"))
        .await
        .unwrap();
    assert_eq!(
        (shop.action(), shop.queue.as_str(), shop.fallback.as_str()),
        (Action::Escalate, "shop_service", "")
    );
    assert_eq!(shop.policy_version, "shop-1");
    let bank = route(&mut client, "bank-secret", None, turn("c1x", "转人工"))
        .await
        .unwrap();
    assert_eq!(
        (bank.action(), bank.queue.as_str(), bank.fallback.as_str()),
        (Action::Escalate, "bank_desk", "callback"),
        "the bank's desk is closed: a callback"
    );
    let money = "我的信用卡账单多扣了一笔钱";
    let shop_money = route(&mut client, "shop-secret", None, turn("m1", money))
        .await
        .unwrap();
    let bank_money = route(&mut client, "bank-secret", None, turn("m1", money))
        .await
        .unwrap();
    assert_eq!(
        bank_money.reasons[0].rule_id, "billing_to_person",
        "{:?}",
        bank_money.reasons
    );
    assert_ne!(shop_money.reasons[0].rule_id, "billing_to_person");

    // The same conversation id under two tenants is two conversations: shop's c1 is escalated,
    // bank's c1 is new.
    let bank_c1 = route(&mut client, "bank-secret", None, turn("c1", "你好"))
        .await
        .unwrap();
    assert_eq!(
        bank_c1.action(),
        Action::ContinueBot,
        "{:?}",
        bank_c1.reasons
    );
    let shop_c1 = route(&mut client, "shop-secret", None, turn("c1", "你好"))
        .await
        .unwrap();
    assert_eq!(shop_c1.reasons[0].rule_id, "already_escalated");

    // A shop key cannot act for the bank, in any call.
    let denied = route(&mut client, "shop-secret", Some("bank"), turn("c1", "你好"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains("cannot act for tenant \"bank\""),
        "{}",
        denied.message()
    );
    let forget = client
        .forget_customer(request(
            ForgetCustomerRequest {
                customer_id: "x".into(),
            },
            "shop-secret",
            Some("bank"),
        ))
        .await
        .unwrap_err();
    assert_eq!(forget.code(), Code::PermissionDenied);
    // Feedback on the bank's decision from the shop finds nothing (not even that it exists); the
    // bank's own feedback is taken.
    let feedback = |id: &str| FeedbackRequest {
        decision_id: id.into(),
        human_needed: HumanNeeded::Needed as i32,
        ..Default::default()
    };
    let foreign = client
        .feedback(request(feedback(&bank.decision_id), "shop-secret", None))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::NotFound);
    let own = client
        .feedback(request(feedback(&bank.decision_id), "bank-secret", None))
        .await
        .unwrap()
        .into_inner();
    assert!(own.recorded);
    // Model operations are an operator's, never a tenant key's.
    let mut admin = common::admin(&server).await;
    let status = admin
        .get_status(request(pb::GetStatusRequest {}, "ops-secret", None))
        .await;
    assert!(status.is_ok(), "{status:?}");

    // An operator names the tenant; without one, the call says which header is missing.
    let unnamed = route(&mut client, "ops-secret", None, turn("o1", "你好"))
        .await
        .unwrap_err();
    assert_eq!(unnamed.code(), Code::InvalidArgument);
    assert!(
        unnamed.message().contains("x-handoff-tenant"),
        "{}",
        unnamed.message()
    );
    let unknown = route(&mut client, "ops-secret", Some("toys"), turn("o1", "你好"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    let as_bank = route(
        &mut client,
        "ops-secret",
        Some("bank"),
        turn("o1", "转人工"),
    )
    .await
    .unwrap();
    assert_eq!(as_bank.queue, "bank_desk");

    // Each tenant's calls count against its own limit: tiny allows one call, then refuses.
    route(&mut client, "tiny-secret", None, turn("t1", "你好"))
        .await
        .unwrap();
    let limited = route(&mut client, "tiny-secret", None, turn("t1", "你好"))
        .await
        .unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted);
    assert!(
        limited.message().contains("tenant \"tiny\""),
        "{}",
        limited.message()
    );
    route(&mut client, "shop-secret", None, turn("t1", "你好"))
        .await
        .expect("the shop is not limited by tiny");

    // A broken bank file is refused; the bank keeps its policy and the shop is untouched.
    // Counted before the write: the watcher polls every 100 ms and may read the file at once.
    let refused_before = common::counter(
        &server.metrics(),
        "handoff_policy_reloads_total{result=\"error\"}",
    );
    std::fs::write(s.dir.join("bank.toml"), "version = \"bank-2\"\nrules = [\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::counter(
        &server.metrics(),
        "handoff_policy_reloads_total{result=\"error\"}",
    ) <= refused_before
    {
        assert!(Instant::now() < deadline, "the broken file was never read");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let still = route(&mut client, "bank-secret", None, turn("b2", "转人工"))
        .await
        .unwrap();
    assert_eq!(
        (still.queue.as_str(), still.policy_version.as_str()),
        ("bank_desk", "bank-1")
    );
    let shop_still = route(&mut client, "shop-secret", None, turn("s2", "转人工"))
        .await
        .unwrap();
    assert_eq!(shop_still.policy_version, "shop-1");

    // Decisions are counted per tenant (a bounded label: the configured names).
    let metrics = server.metrics();
    for tenant in ["shop", "bank", "tiny"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("handoff_decisions_total")
                    && l.contains(&format!("tenant=\"{tenant}\""))),
            "no decisions_total for {tenant}"
        );
    }

    // Replay reads one tenant's records: the bank's five Routes (c1x, m1, c1, o1 through the
    // operator, b2), the shop's five (c1, m1, c1, t1, s2), tiny's one.
    drop((client, admin));
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    let logs = s.dir.join("decisions");
    for (tenant, n) in [("bank", 5), ("shop", 5), ("tiny", 1), ("default", 0)] {
        let printed = replayed(&logs, tenant);
        assert!(
            printed.contains(&format!("{n} logged decisions replayed")),
            "{tenant}: {printed}"
        );
    }
    // The report, too: the bank's page counts the bank's decisions and its one feedback.
    let page = s.dir.join("bank.html");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args([
            "report",
            "--log",
            logs.to_str().unwrap(),
            "--tenant",
            "bank",
            "--out",
        ])
        .arg(&page)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("(5 decisions, 1 with feedback)"),
        "{printed}{out:?}"
    );
}

#[tokio::test]
async fn a_tenant_whose_file_is_broken_at_start_is_refused_while_the_others_serve() {
    let s = setup("broken", "version = \"bank-x\"\n[[rules]]\nid = 1\n");
    let server = Server::start(&["--config", s.config.to_str().unwrap()]);
    let mut client = common::client(&server).await;
    let refused = route(&mut client, "bank-secret", None, turn("b1", "转人工"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains("bank.toml:3"),
        "names the file and line: {}",
        refused.message()
    );
    let shop = route(&mut client, "shop-secret", None, turn("s1", "转人工"))
        .await
        .unwrap();
    assert_eq!(shop.queue, "shop_service");
    // Fixed, the bank serves without a restart.
    std::fs::write(s.dir.join("bank.toml"), bank_policy()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match route(&mut client, "bank-secret", None, turn("b2", "转人工")).await {
            Ok(r) => {
                assert_eq!(r.queue, "bank_desk");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "never recovered: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `config/two-tenants.toml` as shipped: the shop on the example policy, the bank on its own.
#[tokio::test]
async fn the_shipped_two_tenant_example_serves_both_businesses() {
    let server = Server::start(&["--config", "config/two-tenants.toml"]);
    let mut client = common::client(&server).await;
    let text = "我的信用卡被多扣了一笔钱";
    let bank = route(&mut client, "", Some("bank"), turn("c", text))
        .await
        .unwrap();
    assert_eq!(
        (
            bank.action(),
            bank.queue.as_str(),
            bank.reasons[0].rule_id.as_str()
        ),
        (Action::Escalate, "bank_desk", "money")
    );
    assert_eq!(bank.policy_version, "bank-1");
    let shop = route(&mut client, "", Some("shop"), turn("c", text))
        .await
        .unwrap();
    assert_ne!(shop.reasons[0].rule_id, "money");
    assert_eq!(shop.policy_version, "example-6");
}
