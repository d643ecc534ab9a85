//! SIGTERM: readiness flips to NOT_SERVING while liveness stays SERVING, every accepted call is
//! answered, the process exits cleanly.

mod common;

use std::time::Duration;

use handoff::grpc::pb::ClassifyRequest;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test]
async fn sigterm_drains_and_answers_everything_already_accepted() {
    let mut server = common::Server::start(&["--drain-ms", "1500", "--workers", "1"]);
    let endpoint = server.endpoint();
    for service in ["", "handoff.v1.Handoff"] {
        assert_eq!(
            common::health_status(&endpoint, service).await,
            Some(ServingStatus::Serving),
            "{service:?}"
        );
    }

    let client = common::client(&server).await;
    let calls: Vec<_> = (0..60)
        .map(|i| {
            let mut c = client.clone();
            tokio::spawn(async move {
                c.classify(ClassifyRequest {
                    text: format!("第{i}个问题：我的退款什么时候到账？"),
                })
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.terminate();

    let mut saw_not_serving = false;
    for _ in 0..20 {
        if common::health_status(&endpoint, "handoff.v1.Handoff").await
            == Some(ServingStatus::NotServing)
        {
            // Draining is not dying: liveness must not get the process restarted meanwhile.
            assert_eq!(
                common::health_status(&endpoint, "").await,
                Some(ServingStatus::Serving),
                "liveness while draining"
            );
            saw_not_serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        saw_not_serving,
        "readiness did not flip to NOT_SERVING while draining"
    );

    for call in calls {
        let resp = call
            .await
            .unwrap()
            .expect("accepted call answered during shutdown");
        assert!(resp.into_inner().result.is_some());
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = server.wait_exit(Duration::from_secs(30));
        (status, server.log_text())
    })
    .await
    .unwrap();
    assert!(
        status.0.success(),
        "exit status {:?}:\n{}",
        status.0,
        status.1
    );
    assert!(status.1.contains("shutting down"), "{}", status.1);
    assert!(
        !status.1.contains('\u{1b}'),
        "a log written to a file has no colour codes: {:?}",
        &status.1[..status.1.len().min(300)]
    );
}
