//! The deploy kit's queries against real data: a real Prometheus (Debian's `prometheus` package)
//! scrapes a real handoff server under a little mixed load, with the alert rules loaded. Every
//! Grafana panel query must return data, and every series an alert rule reads must exist, so no
//! panel silently shows nothing and no alert is dead because of a wrong name or label.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use handoff::grpc::pb::model_admin_client::ModelAdminClient;
use handoff::grpc::pb::{
    self, ClassifyBatchRequest, ClassifyRequest, FeedbackRequest, RouteRequest, SetShadowRequest,
};

struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

impl Prometheus {
    /// Scrapes `metrics_port` every second as job `handoff`, with the kit's alert rules.
    fn start(metrics_port: u16) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("handoff-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(repo("deploy/prometheus/alerts.yml"), dir.join("alerts.yml")).unwrap();
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [alerts.yml]\n\
                 scrape_configs:\n  - job_name: handoff\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
            ),
        )
        .unwrap();
        let port = common::free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian package prometheus) on PATH");
        Prometheus { child, port, dir }
    }

    /// The `data` of a successful API answer.
    fn api(&self, path_and_query: &str) -> serde_json::Value {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("prometheus port");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // HTTP/1.0: the answer comes whole, not chunked.
        write!(
            s,
            "GET {path_and_query} HTTP/1.0\r\nHost: localhost\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        let (_, body) = response.split_once("\r\n\r\n").expect("HTTP response");
        let v: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {path_and_query}\n{body}"));
        assert_eq!(v["status"], "success", "{path_and_query}: {v}");
        v["data"].clone()
    }

    /// The `result` of an instant query.
    fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        self.api(&format!("/api/v1/query?query={}", encode(promql)))["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Prometheus is up and has loaded the rule file.
    fn ready(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && self.api("/api/v1/rules")["groups"]
                .as_array()
                .is_some_and(|g| !g.is_empty())
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The kit's expressions from one file, as `deploy/grafana/queries.py` prints them for a plain
/// Prometheus (Grafana variables replaced).
fn expressions(file: &str) -> Vec<String> {
    let out = Command::new("python3")
        .arg(repo("deploy/grafana/queries.py"))
        .arg(repo(file))
        .output()
        .expect("python3");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every series selector in an expression: `handoff_x{...}` or `up{...}`.
fn selectors(expr: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\b(handoff_[a-z_]+|up)(\{[^}]*\})?").unwrap();
    re.find_iter(expr).map(|m| m.as_str().to_string()).collect()
}

/// A little of everything the panels show: Classify, ClassifyBatch and Route (escalations among
/// them), a refused request, repeated texts for the cache, and shadow comparisons.
async fn traffic(server: &common::Server) {
    let mut client = common::client(server).await;
    let mut admin = ModelAdminClient::connect(server.endpoint()).await.unwrap();
    admin
        .set_shadow(SetShadowRequest {
            name: "handoff-zh-en".into(),
            version: "2.2.0".into(),
            share: 1.0,
        })
        .await
        .unwrap();
    let texts = [
        "转人工",
        "我的订单到哪了",
        "my account was hacked!!",
        "thanks",
        "气死我了，退款呢[怒]",
    ];
    for round in 0..6 {
        for (i, text) in texts.iter().enumerate() {
            let _ = client
                .classify(ClassifyRequest {
                    text: format!("{text} {round}"),
                })
                .await;
            let _ = client
                .classify(ClassifyRequest {
                    text: text.to_string(),
                })
                .await;
            let routed = client
                .route(RouteRequest {
                    conversation_id: format!("dash-{i}"),
                    message_id: format!("m{round}"),
                    text: text.to_string(),
                    channel: pb::Channel::Wechat as i32,
                    tier: pb::CustomerTier::Vip as i32,
                    ..Default::default()
                })
                .await;
            // Feedback on some decisions (recorded, then a duplicate), for the data-loop panels.
            if let (Ok(routed), true) = (routed, i % 2 == 0) {
                let feedback = FeedbackRequest {
                    decision_id: routed.into_inner().decision_id,
                    human_needed: pb::HumanNeeded::Needed as i32,
                    resolved_by: pb::ResolvedBy::Human as i32,
                    csat: 4,
                    ..Default::default()
                };
                client.feedback(feedback.clone()).await.unwrap();
                client.feedback(feedback).await.unwrap();
            }
        }
        let _ = client
            .classify_batch(ClassifyBatchRequest {
                texts: texts.iter().map(|t| format!("{t} batch {round}")).collect(),
            })
            .await;
        let _ = client.classify(ClassifyRequest { text: " ".into() }).await; // InvalidArgument
                                                                             // DeadlineExceeded: a deadline no inference can meet.
        let mut hurried = tonic::Request::new(ClassifyRequest {
            text: format!("来不及了 {round}"),
        });
        hurried.set_timeout(Duration::from_micros(2500));
        let _ = client.classify(hurried).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
}

#[tokio::test]
async fn every_dashboard_panel_and_alert_rule_reads_real_series() {
    let log_dir = std::env::temp_dir().join(format!("handoff-dash-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&log_dir);
    let server = common::Server::start(&[
        "--policy",
        repo("config/policy.toml").to_str().unwrap(),
        "--set",
        &format!("decision_log.dir={:?}", log_dir.display().to_string()),
    ]);
    let prometheus = Prometheus::start(server.metrics_port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !prometheus.ready() {
        assert!(Instant::now() < deadline, "prometheus did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    traffic(&server).await;
    // rate() over [1m] needs two samples after the traffic: wait for a few more scrapes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while prometheus
        .query("count_over_time(handoff_requests_total[1m])")
        .iter()
        .all(|r| {
            r["value"][1]
                .as_str()
                .unwrap_or("0")
                .parse::<f64>()
                .unwrap_or(0.0)
                < 5.0
        })
    {
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped the server"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut empty = Vec::new();
    let panels = expressions("deploy/grafana/handoff.json");
    assert!(panels.len() > 20, "{panels:?}");
    for expr in &panels {
        if prometheus.query(expr).is_empty() {
            empty.push(format!("panel: {expr}"));
        }
    }
    let alerts = expressions("deploy/prometheus/alerts.yml");
    assert!(alerts.len() > 10, "{alerts:?}");
    let keys = regex::Regex::new(r"([a-z_]+)\s*(=~|!=|!~|=)").unwrap();
    // An alert may watch for a label value that only a fault produces (a shadow disagreement):
    // then the metric and each label it matches on must exist, so a typo cannot hide.
    for expr in &alerts {
        for selector in selectors(expr) {
            if !prometheus.query(&format!("count({selector})")).is_empty() {
                continue;
            }
            let name = selector.split('{').next().unwrap();
            let missing: Vec<String> = keys
                .captures_iter(selector.strip_prefix(name).unwrap_or(""))
                .map(|c| c[1].to_string())
                .filter(|k| {
                    prometheus
                        .query(&format!("count({name}{{{k}!=\"\"}})"))
                        .is_empty()
                })
                .collect();
            if !missing.is_empty() || prometheus.query(&format!("count({name})")).is_empty() {
                empty.push(format!(
                    "alert reads no series {selector} (labels {missing:?}): {expr}"
                ));
            }
        }
    }
    // Every rule evaluates without error (firing is fine: the refused request is on purpose).
    for group in prometheus.api("/api/v1/rules")["groups"]
        .as_array()
        .unwrap()
    {
        for rule in group["rules"].as_array().unwrap() {
            if rule["health"] != "ok" {
                empty.push(format!(
                    "rule {} is {}: {}",
                    rule["name"], rule["health"], rule["lastError"]
                ));
            }
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&log_dir);
    assert!(
        empty.is_empty(),
        "{} queries without data:\n{}",
        empty.len(),
        empty.join("\n")
    );
}
