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

#[tokio::test]
async fn logs_hold_no_customer_text_and_the_audit_log_no_personal_data() {
    let audit = std::env::temp_dir().join(format!("handoff-audit-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&audit);
    let config = std::env::temp_dir().join(format!("handoff-privacy-{}.toml", std::process::id()));
    std::fs::write(&config, format!("audit_log = \"{}\"\n", audit.display())).unwrap();
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
    for (i, text) in texts.iter().enumerate() {
        let req = RouteRequest {
            conversation_id: format!("cust-{PHONE_CN}"),
            message_id: format!("{EMAIL}-{i}"),
            text: text.clone(),
            attributes: [("contact".to_string(), PHONE_INTL.to_string())].into(),
            ..Default::default()
        };
        client.route(req).await.unwrap();
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
    let expected = common::scenarios::scenarios()
        .iter()
        .map(|(_, s)| s.len())
        .sum::<usize>()
        + texts.len()
        + 1;
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

    let customer_texts = common::scenarios::scenarios()
        .into_iter()
        .flat_map(|(_, steps)| steps.into_iter().map(|s| s.text.to_string()))
        .chain(texts.iter().cloned())
        // Very short messages ("ok", "转人工") are also the keywords reasons name: check the rest.
        .filter(|t| t.chars().count() >= 6)
        .collect::<Vec<_>>();
    for (name, logged) in [("server log", &log_text), ("audit log", &audit_text)] {
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
