//! The Python peer (`bench/peer/server.py`: grpcio + onnxruntime on the same package), started as a
//! child process on a free loopback port and stopped when dropped.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use handoff::grpc::pb::handoff_client::HandoffClient;
use handoff::grpc::pb::ClassifyRequest;

pub struct Peer {
    child: Child,
    pub name: &'static str,
    pub addr: String,
}

impl Peer {
    pub async fn start(model: &Path, batching: bool) -> anyhow::Result<Peer> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        // The Python with the peer's packages (bench/peer/requirements.txt), as for the tests.
        let python = std::env::var("HANDOFF_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut cmd = Command::new(python);
        cmd.arg("bench/peer/server.py")
            .arg("--model")
            .arg(model)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if batching {
            cmd.arg("--batching");
        }
        let child = cmd
            .spawn()
            .context("starting python3 bench/peer/server.py")?;
        let peer = Peer {
            child,
            name: if batching {
                "python grpc.aio + ort, batching"
            } else {
                "python grpcio + onnxruntime"
            },
            addr: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        loop {
            if let Ok(mut c) = HandoffClient::connect(peer.addr.clone()).await {
                let request = ClassifyRequest { text: "hi".into() };
                if c.classify(request).await.is_ok() {
                    return Ok(peer);
                }
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "the peer did not answer within 60 s (pip install -r bench/peer/requirements.txt)"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
