//! The logs on disks that fail: a read-only directory stops the start, a full disk makes Feedback
//! answer UNAVAILABLE (never "recorded" for a line that is not on the disk) and logs one error line
//! per interval, not one per record. Real tmpfs mounts (the tests run as root, like CI).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::Server;
use handoff::grpc::pb::handoff_client::HandoffClient;
use handoff::grpc::pb::{self, FeedbackRequest, HumanNeeded, ResolvedBy, RouteRequest};
use tonic::transport::Channel;
use tonic::Code;

/// A tmpfs of `size` at a fresh directory, unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(tag: &str, size: &str) -> Mount {
        let dir = std::env::temp_dir().join(format!("handoff-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount(8)");
        assert!(
            mounted.success(),
            "mounting a tmpfs at {} failed: these tests need root (as CI runs them)",
            dir.display()
        );
        Mount(dir)
    }

    fn read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn serve_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        // One underscore where levels need two: not a setting, said at start.
        .env("HANDOFF_DECISION_LOG_DIR", "/nowhere")
        .arg("serve")
        .args(["--grpc-addr", &format!("127.0.0.1:{}", common::free_port())])
        .args([
            "--metrics-addr",
            &format!("127.0.0.1:{}", common::free_port()),
        ])
        .arg("--model")
        .arg(common::model_dir())
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "started on an unwritable log: {stderr}"
    );
    stderr
}

#[test]
fn a_read_only_log_directory_stops_the_start() {
    let mount = Mount::tmpfs("ro-log", "1m");
    mount.read_only();
    let dir = mount.0.display().to_string();
    let stderr = serve_fails(&["--set", &format!("decision_log.dir={dir}")]);
    assert!(
        stderr.contains(&format!("the decision log directory {dir} is not writable")),
        "{stderr}"
    );
    assert!(
        stderr.contains("HANDOFF_DECISION_LOG_DIR is not a setting and is ignored: did you mean HANDOFF_DECISION_LOG__DIR?"),
        "{stderr}"
    );
    let stderr = serve_fails(&["--set", &format!("audit_log={dir}/audit.jsonl")]);
    assert!(stderr.contains("Read-only file system"), "{stderr}");
}

fn feedback(decision_id: &str) -> FeedbackRequest {
    FeedbackRequest {
        decision_id: decision_id.into(),
        human_needed: HumanNeeded::NotNeeded as i32,
        resolved_by: ResolvedBy::Bot as i32,
        csat: 5,
        wait_seconds: 0,
        ..Default::default()
    }
}

fn feedback_lines(dir: &Path, decision_id: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("feedback-")
        })
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .filter(|l| l.contains(decision_id))
                .count()
        })
        .sum()
}

/// Fill the filesystem at `dir` to the last byte.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.write_all(&[0]); // the last partial block
    path
}

async fn route(client: &mut HandoffClient<Channel>, n: usize) -> String {
    client
        .route(RouteRequest {
            conversation_id: format!("full-disk-{n}"),
            text: "where is my parcel".into(),
            channel: pb::Channel::Web as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .decision_id
}

// Two threads: the client's connection must see the server's GOAWAY while this one waits for the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_full_disk_feedback_is_unavailable_and_errors_are_logged_once_per_interval() {
    let mount = Mount::tmpfs("full-log", "2m");
    let log_dir = mount.0.join("log");
    let mut server = Server::start(&["--set", &format!("decision_log.dir={}", log_dir.display())]);
    let mut client = common::client(&server).await;
    let first = route(&mut client, 0).await;
    let second = route(&mut client, 1).await;

    let filler = fill(&mount.0);
    for n in 2..300 {
        route(&mut client, n).await; // decided and answered; their log lines fail
    }
    let refused = client.feedback(feedback(&first)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("could not write the feedback"),
        "{refused:?}"
    );
    // Not recorded: the same feedback again is refused the same way, not taken as a duplicate.
    let again = client.feedback(feedback(&first)).await.unwrap_err();
    assert_eq!(again.code(), Code::Unavailable, "{again:?}");
    let metrics = server.metrics();
    assert!(
        common::counter(&metrics, "handoff_decision_log_write_errors_total") >= 2.0,
        "{metrics}"
    );
    assert_eq!(
        common::counter(&metrics, "handoff_feedback_total{outcome=\"unwritten\"}"),
        2.0,
        "{metrics}"
    );

    // Space again: the retry is recorded, once.
    std::fs::remove_file(filler).unwrap();
    let recorded = client
        .feedback(feedback(&first))
        .await
        .unwrap()
        .into_inner();
    assert!(recorded.recorded);
    let duplicate = client
        .feedback(feedback(&first))
        .await
        .unwrap()
        .into_inner();
    assert!(!duplicate.recorded);
    assert!(
        client
            .feedback(feedback(&second))
            .await
            .unwrap()
            .into_inner()
            .recorded
    );
    drop(client);
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    assert_eq!(
        feedback_lines(&log_dir, &first),
        1,
        "written once, when it could be"
    );
    assert_eq!(feedback_lines(&log_dir, &second), 1);

    // Hundreds of failed lines, a handful of log lines saying so.
    let log = server.log_text();
    let errors = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("decision log"))
        .count();
    assert!((1..=3).contains(&errors), "{errors} error lines:\n{log}");
}
