//! Model swaps without downtime, over real gRPC: swaps under load, refused packages, rollback,
//! shadow evaluation and the repository watcher.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{admin, Server, TempRepo};
use handoff::grpc::pb::{
    ActivateModelRequest, ClassifyRequest, GetStatusRequest, RollbackRequest, SetShadowRequest,
};
use tonic::Code;

fn activate(version: &str) -> ActivateModelRequest {
    ActivateModelRequest {
        name: "handoff-zh-en".into(),
        version: version.into(),
    }
}

async fn serving_version(server: &Server) -> String {
    let resp = common::classify(server, "我的订单到哪了").await;
    resp.model.unwrap().version
}

#[tokio::test]
async fn swapping_back_and_forth_under_load_fails_no_request() {
    let repo = TempRepo::new("swap");
    let v1 = repo.add("1.0.0", |m| m);
    repo.add("1.0.1", |m| m);
    let server = repo.start(&v1, &["--workers", "2"]);
    let client = common::client(&server).await;
    let stop = Arc::new(AtomicBool::new(false));
    // (request start, version that answered) for every response; errors are counted apart.
    let seen: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let failures = Arc::new(Mutex::new(Vec::new()));
    let callers: Vec<_> = (0..8)
        .map(|i| {
            let (mut c, stop, seen, failures) =
                (client.clone(), stop.clone(), seen.clone(), failures.clone());
            tokio::spawn(async move {
                let texts = [
                    "转人工",
                    "where is my order",
                    "我要退款",
                    "my account was hacked",
                ];
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    match c
                        .classify(ClassifyRequest {
                            text: texts[(i + n) % texts.len()].into(),
                        })
                        .await
                    {
                        Ok(r) => seen
                            .lock()
                            .unwrap()
                            .push((started, r.into_inner().model.unwrap().version)),
                        Err(e) => failures.lock().unwrap().push(e),
                    }
                    n += 1;
                }
            })
        })
        .collect();

    let mut admin = admin(&server).await;
    let mut swaps = Vec::new(); // (started, completed, version)
    for round in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let version = if round % 2 == 0 { "1.0.1" } else { "1.0.0" };
        let started = Instant::now();
        let status = admin
            .activate_model(activate(version))
            .await
            .unwrap()
            .into_inner();
        swaps.push((started, Instant::now(), version));
        assert_eq!(status.active.unwrap().version, version);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.await.unwrap();
    }

    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} requests failed during swaps: {:?}",
        failures.len(),
        failures.first()
    );
    let seen = seen.lock().unwrap();
    assert!(seen.len() > 50, "only {} requests ran", seen.len());
    for (i, (_, completed, version)) in swaps.iter().enumerate() {
        let next_start = swaps.get(i + 1).map(|s| s.0);
        let window: Vec<_> = seen
            .iter()
            .filter(|(t, _)| *t > *completed && next_start.is_none_or(|n| *t < n))
            .collect();
        assert!(
            !window.is_empty(),
            "no request between swap {i} and the next"
        );
        for (_, v) in window {
            assert_eq!(
                v, version,
                "a request started after swap {i} completed was answered by the old model"
            );
        }
    }
    assert!(seen.iter().all(|(_, v)| v == "1.0.0" || v == "1.0.1"));
}

#[tokio::test]
async fn broken_packages_are_refused_while_the_old_model_serves_and_rollback_restores() {
    let repo = TempRepo::new("broken");
    let v1 = repo.add("1.0.0", |m| m);
    repo.add("1.0.1", |m| m);
    repo.add("9.0.0", |m| {
        m.replace("model = \"model.onnx\"", "model = \"tokenizer.json\"")
    });
    repo.add("9.0.1", |m| {
        m.replace("\"other\"]", "\"other\", \"extra\"]")
    });
    repo.add("9.0.2", |m| {
        m.replacen("intent = \"request_human\"", "intent = \"order_status\"", 1)
    });
    repo.add("9.0.3", |m| m.replace("\"complaint\"", "\"grievance\""));
    let server = repo.start(&v1, &[]);
    let mut admin = admin(&server).await;

    for (version, reason) in [
        ("9.0.0", "invalid ONNX graph"),
        ("9.0.1", "intent output has shape"),
        ("9.0.2", "golden examples failed"),
        ("9.0.3", "\"complaint\""),
    ] {
        let err = admin.activate_model(activate(version)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{version}: {err:?}");
        assert!(
            err.message().contains(reason),
            "{version}: {}",
            err.message()
        );
        // The caller learns which package, not where the server keeps it.
        assert!(
            !err.message().contains(repo.root.to_str().unwrap()),
            "{version}: {}",
            err.message()
        );
        assert_eq!(
            serving_version(&server).await,
            "1.0.0",
            "old model keeps serving after {version}"
        );
    }
    let missing = admin.activate_model(activate("7.7.7")).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    admin.activate_model(activate("latest")).await.unwrap_err(); // latest is the broken 9.0.3
    admin.activate_model(activate("1.0.1")).await.unwrap();
    assert_eq!(serving_version(&server).await, "1.0.1");
    let status = admin
        .rollback(RollbackRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.active.unwrap().version, "1.0.0");
    assert_eq!(serving_version(&server).await, "1.0.0");

    let metrics = server.metrics();
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("handoff_model_loads_total{result=\"refused\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert_eq!(refused, Some(5.0), "{metrics}");
    assert!(
        metrics.contains("handoff_model_info{name=\"handoff-zh-en\",version=\"1.0.0\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("handoff_model_info{name=\"handoff-zh-en\",version=\"1.0.1\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn shadow_agreement_is_counted_with_both_versions() {
    let repo = TempRepo::new("shadow");
    let v1 = repo.add("1.0.0", |m| m);
    repo.add("1.0.1", |m| m);
    let server =
        Server::start_with_model(&v1, &["--model-repository", repo.root.to_str().unwrap()]);
    let mut admin = admin(&server).await;
    let bad_share = SetShadowRequest {
        name: "handoff-zh-en".into(),
        version: "1.0.1".into(),
        share: 1.5,
    };
    assert_eq!(
        admin.set_shadow(bad_share).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let req = SetShadowRequest {
        name: "handoff-zh-en".into(),
        version: "1.0.1".into(),
        share: 1.0,
    };
    let status = admin.set_shadow(req).await.unwrap().into_inner();
    assert_eq!(
        (status.shadow.unwrap().version.as_str(), status.shadow_share),
        ("1.0.1", 1.0)
    );

    let mut client = common::client(&server).await;
    for text in ["转人工", "where is my order", "气死我了[怒]", "发票怎么开"] {
        let resp = client
            .classify(ClassifyRequest { text: text.into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            resp.model.unwrap().version,
            "1.0.0",
            "live answers come from the live model"
        );
    }
    let want = "handoff_shadow_comparisons_total{live_version=\"1.0.0\",candidate_version=\"1.0.1\",head=\"intent\",agree=\"true\"} 4";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = server.metrics();
        if metrics.contains(want) {
            for head in ["sentiment", "upset", "action"] {
                assert!(
                    metrics.contains(&format!("head=\"{head}\",agree=\"true\"}} 4")),
                    "{head}: {metrics}"
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shadow comparisons never appeared:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let off = SetShadowRequest {
        share: 0.0,
        ..Default::default()
    };
    assert!(admin
        .set_shadow(off)
        .await
        .unwrap()
        .into_inner()
        .shadow
        .is_none());
}

#[tokio::test]
async fn the_watcher_activates_a_new_version_dropped_into_the_repository() {
    let repo = TempRepo::new("watch");
    let v1 = repo.add("1.0.0", |m| m);
    let server = Server::start_with_model(
        &v1,
        &[
            "--model-repository",
            repo.root.to_str().unwrap(),
            "--watch-interval-ms",
            "200",
            "--auto-activate",
            "true",
        ],
    );
    repo.add("1.1.0", |m| m);
    let mut admin = admin(&server).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = admin
            .get_status(GetStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if status.active.as_ref().unwrap().version == "1.1.0" {
            assert_eq!(status.previous.unwrap().version, "1.0.0");
            break;
        }
        assert!(Instant::now() < deadline, "watcher did not activate 1.1.0");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(serving_version(&server).await, "1.1.0");
}

#[tokio::test]
async fn the_config_can_name_the_model_by_version_or_latest() {
    let repo = TempRepo::new("latest");
    repo.add("1.0.0", |m| m);
    repo.add("1.2.0", |m| m);
    repo.add("1.10.0", |m| m);
    let latest = repo.start(std::path::Path::new("handoff-zh-en@latest"), &[]);
    assert_eq!(
        serving_version(&latest).await,
        "1.10.0",
        "latest compares versions numerically"
    );
    let pinned = repo.start(std::path::Path::new("handoff-zh-en@1.2.0"), &[]);
    assert_eq!(serving_version(&pinned).await, "1.2.0");
}

#[tokio::test]
async fn deleting_model_files_under_a_running_server_does_not_crash_it() {
    let repo = TempRepo::new("deleted");
    let v1 = repo.add("1.0.0", |m| m);
    let server = Server::start_with_model(
        &v1,
        &[
            "--model-repository",
            repo.root.to_str().unwrap(),
            "--watch-interval-ms",
            "100",
        ],
    );
    // The serving package vanishes from disk: it keeps serving from memory.
    std::fs::remove_dir_all(&v1).unwrap();
    assert_eq!(serving_version(&server).await, "1.0.0");
    // A newer package without its model file: the watcher and an activation both fail cleanly.
    let v2 = repo.add("1.1.0", |m| m);
    std::fs::remove_file(v2.join("model.onnx")).unwrap();
    let mut admin = admin(&server).await;
    let refused = admin.activate_model(activate("1.1.0")).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("model.onnx"),
        "{}",
        refused.message()
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // a few watcher passes
    let listed = admin
        .list_models(handoff::grpc::pb::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.packages.iter().all(|p| p.version != "1.0.0"));
    assert_eq!(serving_version(&server).await, "1.0.0");
    assert!(!server.log_text().contains("panicked"));
}

#[tokio::test]
async fn the_previous_default_swaps_in_only_under_a_policy_whose_intents_it_has() {
    let repo = TempRepo::new("v1v2");
    let v2 = repo.add_from(&common::model_dir(), "2.2.0", |m| m);
    repo.add_from(&common::model_dir_v1(), "1.0.0", |m| m);

    // The built-in policy escalates `security_incident`, which 1.0.0 does not have.
    let server = repo.start(&v2, &[]);
    let refused = admin(&server)
        .await
        .activate_model(activate("1.0.0"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("security_incident"),
        "{refused:?}"
    );
    assert_eq!(serving_version(&server).await, "2.2.0");
    drop(server);

    // A policy that names only intents both packages have: swap to 1.0.0 and roll back to 2.2.0.
    let policy = repo.root.join("shared-intents.toml");
    std::fs::write(&policy, common::shared_intents_policy()).unwrap();
    let server = repo.start(&v2, &["--policy", policy.to_str().unwrap()]);
    let mut admin = admin(&server).await;
    admin.activate_model(activate("1.0.0")).await.unwrap();
    assert_eq!(serving_version(&server).await, "1.0.0");
    admin.rollback(RollbackRequest {}).await.unwrap();
    assert_eq!(serving_version(&server).await, "2.2.0");
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kib / 1024.0
}

/// A swapped-out model's memory goes back once its last batch ends: cache entries keep outputs,
/// not the model, and the allocator returns the freed pages. Activate/rollback cycles with traffic
/// between them leave the resident set within 50 MiB of where it started: 6 cycles here (a load
/// takes seconds in a test build), `HANDOFF_SWAP_CYCLES=25` for the README's figure (printed).
#[tokio::test]
async fn memory_returns_after_many_swap_cycles() {
    let cycles: usize = std::env::var("HANDOFF_SWAP_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(6);
    let repo = TempRepo::new("rss");
    let v1 = repo.add("1.0.0", |m| m);
    repo.add("1.0.1", |m| m);
    let server = repo.start(&v1, &[]);
    let mut admin = admin(&server).await;
    let client = common::client(&server).await;
    let traffic = |round: usize| {
        let mut client = client.clone();
        async move {
            // Distinct texts, so every round fills cache entries for the model serving it.
            for i in 0..40 {
                let text = format!("where is my order {round}-{i}");
                client.classify(ClassifyRequest { text }).await.unwrap();
            }
        }
    };
    traffic(0).await;
    let fresh = rss_mib(server.pid());
    for cycle in 1..=cycles {
        admin.activate_model(activate("1.0.1")).await.unwrap();
        traffic(2 * cycle).await;
        admin.rollback(RollbackRequest {}).await.unwrap();
        traffic(2 * cycle + 1).await;
    }
    // The last replaced model is released once its batches are done (polled every 100 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = rss_mib(server.pid());
    eprintln!("RSS: fresh {fresh:.0} MiB, after {cycles} activate/rollback cycles {after:.0} MiB");
    assert!(
        after < fresh + 50.0,
        "RSS {fresh:.0} MiB fresh, {after:.0} MiB after {cycles} cycles"
    );
    assert_eq!(serving_version(&server).await, "1.0.0");
    drop(client);
}
