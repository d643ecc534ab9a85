//! Privacy: after the whole scenario suite and a conversation full of personal data, neither the
//! server's log (at debug level) nor its audit log holds any customer text, and the audit log holds
//! no unredacted phone number, e-mail address, ID or card number.

mod common;

use handoff::grpc::pb::RouteRequest;

/// Personal data of both formats, sent in text, ids and attributes.
const PHONE_CN: &str = "13812345678";
const PHONE_INTL: &str = "+44 20 7946 0958";
const EMAIL: &str = "zhang.san@example.com";
const ID_CN: &str = "11010519491231002X";
const CARD: &str = "6222020200112233445";
const FULL_WIDTH_EMAIL: &str = "ZHANG.SAN＠EXAMPLE.COM";
const FULL_WIDTH_PHONE: &str = "１３８１２３４５６７８";
const PHONE_US: &str = "+1 (415) 555-2671";

#[tokio::test]
async fn logs_hold_no_customer_text_and_the_audit_log_no_personal_data() {
    let audit = std::env::temp_dir().join(format!("handoff-audit-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&audit);
    let config = std::env::temp_dir().join(format!("handoff-privacy-{}.toml", std::process::id()));
    let decision_log =
        std::env::temp_dir().join(format!("handoff-privacy-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&decision_log);
    std::fs::write(
        &config,
        format!(
            "audit_log = \"{}\"\n[decision_log]\ndir = \"{}\"\n",
            audit.display(),
            decision_log.display()
        ),
    )
    .unwrap();
    let server = common::Server::start_with_log(
        &common::model_dir(),
        &["--config", config.to_str().unwrap()],
        "info,handoff=debug",
    );
    let mut client = common::client(&server).await;
    let failures = common::scenarios::run(&mut client, "privacy").await;
    assert!(failures.is_empty(), "{failures:?}");

    let texts = [
        format!("我的手机是{PHONE_CN}，转人工"),
        format!("call me at {PHONE_INTL} or mail {EMAIL}, I want a real person"),
        format!("身份证{ID_CN}，银行卡{CARD}被盗刷了"),
    ];
    // Full-width forms and a North American number are the same personal data.
    let ids = [
        (format!("cust-{PHONE_CN}"), format!("{EMAIL}-0")),
        (FULL_WIDTH_EMAIL.to_string(), FULL_WIDTH_PHONE.to_string()),
        (PHONE_US.to_string(), format!("{EMAIL}-2")),
    ];
    let mut decision_ids = Vec::new();
    for (text, (conversation_id, message_id)) in texts.iter().zip(ids) {
        let req = RouteRequest {
            conversation_id,
            message_id,
            text: text.clone(),
            attributes: [("contact".to_string(), PHONE_INTL.to_string())].into(),
            ..Default::default()
        };
        decision_ids.push(client.route(req).await.unwrap().into_inner().decision_id);
    }
    // Feedback on each is written beside the decisions.
    for id in &decision_ids {
        client
            .feedback(handoff::grpc::pb::FeedbackRequest {
                decision_id: id.clone(),
                human_needed: handoff::grpc::pb::HumanNeeded::Needed as i32,
                csat: 2,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    // An admin action is audited too (refused: no such version).
    let mut admin =
        handoff::grpc::pb::model_admin_client::ModelAdminClient::connect(server.endpoint())
            .await
            .unwrap();
    let _ = admin
        .activate_model(handoff::grpc::pb::ActivateModelRequest {
            name: "handoff-zh-en".into(),
            version: "9.9.9".into(),
        })
        .await;

    // The audit writer flushes when its queue runs dry: wait for every record.
    let expected = common::scenarios::decided_turns() + texts.len() + 1;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let audit_text = loop {
        let t = std::fs::read_to_string(&audit).unwrap_or_default();
        if t.lines().count() >= expected || std::time::Instant::now() > deadline {
            break t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let log_text = server.log_text();
    assert_eq!(audit_text.lines().count(), expected, "{audit_text}");
    // The decision log: every decision (all but the admin record) and its feedback.
    let decision_log_text = loop {
        let text: String = std::fs::read_dir(&decision_log)
            .map(|d| {
                d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        if text.lines().count() >= expected - 1 + decision_ids.len()
            || std::time::Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        decision_log_text.lines().count(),
        expected - 1 + decision_ids.len()
    );

    let customer_texts = common::scenarios::scenarios()
        .into_iter()
        .flat_map(|(_, steps)| steps.into_iter().map(|s| s.text.to_string()))
        .chain(texts.iter().cloned())
        // Very short messages ("ok", "转人工") are also the keywords reasons name: check the rest.
        .filter(|t| t.chars().count() >= 6)
        .collect::<Vec<_>>();
    for (name, logged) in [
        ("server log", &log_text),
        ("audit log", &audit_text),
        ("decision log", &decision_log_text),
    ] {
        for text in &customer_texts {
            assert!(
                !logged.contains(text.as_str()),
                "{name} holds customer text {text:?}"
            );
        }
        for pii in [
            PHONE_CN,
            PHONE_INTL,
            EMAIL,
            ID_CN,
            CARD,
            "7946 0958",
            "example.com",
            FULL_WIDTH_EMAIL,
            FULL_WIDTH_PHONE,
            "555-2671",
            "(415)",
        ] {
            assert!(!logged.contains(pii), "{name} holds {pii:?}:\n{logged}");
        }
    }
    // Redacted, not dropped: the caller's ids are there with placeholders, decisions with callers.
    let records: Vec<serde_json::Value> = audit_text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert!(records
        .iter()
        .any(|r| r["conversation_id"] == "cust-[phone]"));
    assert!(records.iter().any(|r| r["message_id"]
        .as_str()
        .is_some_and(|m| m.starts_with("[email]"))));
    assert!(records
        .iter()
        .filter(|r| r["event"] == "decision")
        .all(|r| r["caller"] == "anonymous"
            && r["decision_id"].is_string()
            && r["action"].is_string()));
    // Server-made values are kept as served, so the trail joins the decisions (a decision id's
    // digit groups once looked like a number to the redactor).
    for id in &decision_ids {
        assert!(
            records.iter().any(|r| r["decision_id"] == id.as_str()),
            "decision {id} not in the audit log as served:\n{audit_text}"
        );
    }
    let admin_record = records
        .iter()
        .find(|r| r["event"] == "admin")
        .expect("admin action audited");
    assert_eq!(admin_record["rpc"], "ActivateModel");
    assert!(
        admin_record["result"]
            .as_str()
            .unwrap()
            .starts_with("NotFound"),
        "{admin_record}"
    );
}

/// A policy version with a long digit run (a release date) is the operator's, not personal data:
/// the audit log keeps it as the response named it.
#[tokio::test]
async fn audit_log_keeps_policy_versions_as_served() {
    let dir = std::env::temp_dir().join(format!("handoff-audit-versions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let audit = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&audit);
    let policy = dir.join("policy.toml");
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/policy.toml"),
    )
    .unwrap();
    let version_line = shipped
        .lines()
        .find(|l| l.starts_with("version = "))
        .unwrap();
    std::fs::write(
        &policy,
        shipped.replace(version_line, "version = \"release-20261125\""),
    )
    .unwrap();
    let config = dir.join("handoff.toml");
    std::fs::write(&config, format!("audit_log = \"{}\"\n", audit.display())).unwrap();
    let server = common::Server::start(&[
        "--config",
        config.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    let mut client = common::client(&server).await;
    let served = client
        .route(RouteRequest {
            conversation_id: "c-versions".into(),
            text: "转人工".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(served.policy_version, "release-20261125");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let record: serde_json::Value = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            break serde_json::from_str(line).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no audit record");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(record["policy_version"], "release-20261125", "{record}");
    assert_eq!(
        record["decision_id"],
        served.decision_id.as_str(),
        "{record}"
    );
}

/// With text retention opted in, the decision log keeps each message's text, redacted.
#[tokio::test]
async fn retained_text_in_the_decision_log_is_redacted() {
    let dir = std::env::temp_dir().join(format!("handoff-retain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = dir.with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "[decision_log]\ndir = \"{}\"\nkeep_redacted_text = true\n",
            dir.display()
        ),
    )
    .unwrap();
    let server = common::Server::start(&["--config", config.to_str().unwrap()]);
    let mut client = common::client(&server).await;
    let text = format!("my card {CARD} was charged twice, call {PHONE_CN}");
    client
        .route(RouteRequest {
            conversation_id: "retain-1".into(),
            text: text.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let logged = loop {
        let found = std::fs::read_dir(&dir).ok().and_then(|d| {
            d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                .find(|t| !t.is_empty())
        });
        if let Some(t) = found {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "nothing logged");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let record: serde_json::Value = serde_json::from_str(logged.lines().next().unwrap()).unwrap();
    assert_eq!(
        record["text"], "my card [card] was charged twice, call [phone]",
        "{logged}"
    );
    assert!(!logged.contains(CARD) && !logged.contains(PHONE_CN));
}

/// The audit log rotates under load (by size, keeping `max_files`), and on SIGTERM every decision
/// the server answered is on disk: the last file is synced before the process exits.
#[tokio::test]
async fn the_audit_log_rotates_and_keeps_every_record_through_shutdown() {
    let dir = std::env::temp_dir().join(format!("handoff-audit-rotation-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let audit = dir.join("audit.jsonl");
    // A decision record is ~500 bytes: a few per file, so 60 decisions rotate many times.
    let served = audited_run(&audit, 50, "first", 60).await;
    let rotated = handoff::audit::rotated(&audit).unwrap();
    assert!(rotated.len() >= 5, "rotated {} times", rotated.len());
    let mut ids = Vec::new();
    for file in rotated.iter().chain([&audit]) {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            text.len() <= 4000,
            "{}: {} bytes",
            file.display(),
            text.len()
        );
        for line in text.lines() {
            let record: serde_json::Value = serde_json::from_str(line).expect("whole JSON lines");
            if let Some(id) = record["decision_id"].as_str() {
                ids.push(id.to_string());
            }
        }
    }
    assert_eq!(
        ids, served,
        "every decision, once, in order, across the files"
    );

    // With fewer files allowed, the oldest go.
    audited_run(&audit, 3, "second", 20).await;
    assert_eq!(
        handoff::audit::rotated(&audit).unwrap().len(),
        2,
        "3 files with the open one"
    );
}

/// A server auditing to `audit` (rotated past 4,000 bytes, `max_files` kept) decides `turns`
/// conversations of one message and is stopped at once (nothing waits for the writer's next idle
/// flush); the decision ids it served, in order.
async fn audited_run(
    audit: &std::path::Path,
    max_files: usize,
    tag: &str,
    turns: usize,
) -> Vec<String> {
    let config = audit.with_file_name(format!("handoff-{tag}.toml"));
    std::fs::write(
        &config,
        format!(
            "audit_log = \"{}\"\n[audit]\nmax_file_bytes = 4000\nmax_files = {max_files}\n",
            audit.display()
        ),
    )
    .unwrap();
    let server = common::Server::start(&["--config", config.to_str().unwrap()]);
    let mut client = common::client(&server).await;
    let mut served = Vec::new();
    for i in 0..turns {
        let reply = client
            .route(RouteRequest {
                conversation_id: format!("c-rotation-{tag}-{i}"),
                text: format!("where is my order {i}"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        served.push(reply.decision_id);
    }
    drop(client);
    stop(server).await;
    served
}

/// SIGTERM, and wait off the runtime (the client's connection must see the server go away).
async fn stop(mut server: common::Server) {
    server.terminate();
    let wait = move || server.wait_exit(std::time::Duration::from_secs(30));
    let status = tokio::task::spawn_blocking(wait).await.unwrap();
    assert!(status.success(), "{status}");
}
