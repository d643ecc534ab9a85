//! TLS, mutual TLS, API keys, scopes and rate limits over real TLS connections, with certificates
//! made by the documented openssl recipe (`scripts/dev-certs.sh`).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use handoff::grpc::pb::handoff_client::HandoffClient;
use handoff::grpc::pb::model_admin_client::ModelAdminClient;
use handoff::grpc::pb::{ClassifyRequest, GetStatusRequest, RollbackRequest, RouteRequest};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;

fn hash(key: &str) -> String {
    handoff::security::auth::hash_key(key)
}

fn write_config(tag: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("handoff-sec-{tag}-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// A TLS channel trusting `ca`, presenting `client` (a name under `dir`) if given.
async fn tls_channel(
    server: &common::Server,
    dir: &Path,
    ca: &str,
    client: Option<&str>,
) -> Result<Channel, tonic::transport::Error> {
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(ca)))
        .domain_name("localhost");
    if let Some(name) = client {
        tls = tls.identity(Identity::from_pem(
            read(&format!("{name}.pem")),
            read(&format!("{name}.key")),
        ));
    }
    Channel::from_shared(format!("https://127.0.0.1:{}", server.grpc_port))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

fn route_request() -> tonic::Request<RouteRequest> {
    tonic::Request::new(RouteRequest {
        conversation_id: "sec".into(),
        text: "where is my order".into(),
        ..Default::default()
    })
}

fn with_key<T>(mut req: tonic::Request<T>, key: &str) -> tonic::Request<T> {
    let value: MetadataValue<_> = format!("Bearer {key}").parse().unwrap();
    req.metadata_mut().insert("authorization", value);
    req
}

#[tokio::test]
async fn mutual_tls_admits_known_client_certificates_with_their_scopes() {
    let dir = common::dev_certs("mtls");
    let config = write_config(
        "mtls",
        &format!(
            "[tls]\ncert = \"{d}/server.pem\"\nkey = \"{d}/server.key\"\nclient_ca = \"{d}/ca.pem\"\n\n\
             [[auth.clients]]\nsubject = \"chat-backend\"\nscopes = [\"classify\", \"route\"]\n\n\
             [[auth.clients]]\nsubject = \"ops-admin\"\nscopes = [\"admin\"]\n",
            d = dir.display()
        ),
    );
    let server = common::Server::start_tls(&["--config", config.to_str().unwrap()]);

    // A plain-text client gets nowhere.
    let plain = async {
        let mut c = HandoffClient::connect(server.endpoint()).await.ok()?;
        c.route(route_request()).await.ok()
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(10), plain)
            .await
            .ok()
            .flatten()
            .is_none(),
        "plain text answered by a TLS server"
    );
    // TLS without a client certificate, or with one from another CA: refused in the handshake.
    for client in [None, Some("client-rogue")] {
        let refused = match tls_channel(&server, &dir, "ca.pem", client).await {
            Err(_) => true,
            Ok(ch) => HandoffClient::new(ch).route(route_request()).await.is_err(),
        };
        assert!(refused, "{client:?} was let in");
    }

    let backend = tls_channel(&server, &dir, "ca.pem", Some("client-chat-backend"))
        .await
        .unwrap();
    let resp = HandoffClient::new(backend.clone())
        .route(route_request())
        .await
        .unwrap();
    assert!(!resp.into_inner().decision_id.is_empty());
    let denied = ModelAdminClient::new(backend)
        .get_status(GetStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("admin"), "{}", denied.message());

    let ops = tls_channel(&server, &dir, "ca.pem", Some("client-ops-admin"))
        .await
        .unwrap();
    assert!(ModelAdminClient::new(ops.clone())
        .get_status(GetStatusRequest {})
        .await
        .is_ok());
    let no_route = HandoffClient::new(ops)
        .route(route_request())
        .await
        .unwrap_err();
    assert_eq!(no_route.code(), Code::PermissionDenied);
    let metrics = server.metrics();
    assert!(
        common::counter(&metrics, "handoff_tls_handshake_failures_total") > 0.0,
        "refused handshakes are counted"
    );
}

#[tokio::test]
async fn api_keys_scopes_rate_limits_and_certificate_reload_over_tls() {
    let dir = common::dev_certs("keys");
    let live = std::env::temp_dir().join(format!("handoff-live-certs-{}", std::process::id()));
    std::fs::create_dir_all(&live).unwrap();
    for f in ["server.pem", "server.key"] {
        std::fs::copy(dir.join(f), live.join(f)).unwrap();
    }
    let audit = live.join("audit.jsonl");
    let _ = std::fs::remove_file(&audit);
    let config = write_config(
        "keys",
        &format!(
            "audit_log = \"{a}\"\n\n[tls]\ncert = \"{l}/server.pem\"\nkey = \"{l}/server.key\"\nreload_poll_ms = 100\n\n\
             [[auth.api_keys]]\nname = \"classifier\"\nsha256 = \"{c}\"\nscopes = [\"classify\"]\n\n\
             [[auth.api_keys]]\nname = \"router\"\nsha256 = \"{r}\"\nscopes = [\"route\"]\nrate_per_s = 1\nburst = 3\n\n\
             [[auth.api_keys]]\nname = \"ops\"\nsha256 = \"{o}\"\nscopes = [\"admin\"]\n",
            a = audit.display(),
            l = live.display(),
            c = hash("key-classify"),
            r = hash("key-route"),
            o = hash("key-admin"),
        ),
    );
    let server = common::Server::start_tls(&["--config", config.to_str().unwrap()]);
    let channel = tls_channel(&server, &dir, "ca.pem", None).await.unwrap();
    let mut handoff = HandoffClient::new(channel.clone());
    let mut admin = ModelAdminClient::new(channel);

    let missing = handoff.route(route_request()).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(missing.message().contains("authorization"), "{missing:?}");
    let wrong = handoff
        .route(with_key(route_request(), "key-guess"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let classify = tonic::Request::new(ClassifyRequest { text: "hi".into() });
    assert!(handoff
        .classify(with_key(classify, "key-classify"))
        .await
        .is_ok());
    let scope = handoff
        .route(with_key(route_request(), "key-classify"))
        .await
        .unwrap_err();
    assert_eq!(scope.code(), Code::PermissionDenied);
    let classify = tonic::Request::new(ClassifyRequest { text: "hi".into() });
    let scope = handoff
        .classify(with_key(classify, "key-route"))
        .await
        .unwrap_err();
    assert_eq!(
        scope.code(),
        Code::PermissionDenied,
        "route does not imply classify"
    );
    for key in ["key-classify", "key-route"] {
        let denied = admin
            .rollback(with_key(tonic::Request::new(RollbackRequest {}), key))
            .await
            .unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied, "{key}");
    }
    // Refused admin calls never reach a handler: the guard audits them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let refusals = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let refusals: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|r: &serde_json::Value| r["event"] == "admin")
            .collect();
        if refusals.len() >= 2 || Instant::now() > deadline {
            break refusals;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    for (record, caller) in refusals.iter().zip(["classifier", "router"]) {
        assert_eq!(record["caller"], caller);
        assert_eq!(record["rpc"], "Rollback");
        assert!(
            record["result"]
                .as_str()
                .unwrap()
                .starts_with("PermissionDenied"),
            "{record}"
        );
    }
    // The scheme of `authorization` is case-insensitive.
    let mut lower = tonic::Request::new(ClassifyRequest { text: "hi".into() });
    lower
        .metadata_mut()
        .insert("authorization", "bearer key-classify".parse().unwrap());
    assert!(handoff.classify(lower).await.is_ok());
    assert!(admin
        .get_status(with_key(
            tonic::Request::new(GetStatusRequest {}),
            "key-admin"
        ))
        .await
        .is_ok());

    // The router's burst is 3 at 1/s: a quick fourth call is shed, by name, and counted.
    let mut codes = Vec::new();
    for _ in 0..4 {
        let r = handoff.route(with_key(route_request(), "key-route")).await;
        codes.push(r.map_or_else(|s| s.code(), |_| Code::Ok));
    }
    assert_eq!(codes[..3], [Code::Ok, Code::Ok, Code::Ok]);
    assert_eq!(codes[3], Code::ResourceExhausted);
    assert!(server
        .metrics()
        .contains("handoff_shed_requests_total{reason=\"rate_limit\"} 1"));

    // New certificates from another CA: once reloaded, new connections are served with them.
    let fresh = common::dev_certs("fresh");
    assert!(
        tls_channel(&server, &fresh, "ca.pem", None).await.is_err(),
        "old certificate still served"
    );
    for f in ["server.pem", "server.key"] {
        let tmp = live.join(format!("{f}.tmp"));
        std::fs::copy(fresh.join(f), &tmp).unwrap();
        std::fs::rename(&tmp, live.join(f)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(ch) = tls_channel(&server, &fresh, "ca.pem", None).await {
            let req = tonic::Request::new(ClassifyRequest { text: "hi".into() });
            assert!(HandoffClient::new(ch)
                .classify(with_key(req, "key-classify"))
                .await
                .is_ok());
            break;
        }
        assert!(Instant::now() < deadline, "certificates never reloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server
        .metrics()
        .contains("handoff_tls_reloads_total{result=\"ok\"}"));
}
