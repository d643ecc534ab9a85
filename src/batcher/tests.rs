//! The batcher against a fake backend that records every batch it runs.

use std::sync::atomic::{AtomicBool, Ordering};

use super::admission::{held, MAX_HOLD};
use super::*;

/// A backend whose texts are as many tokens as they have words, which records the row lengths
/// of every batch it runs and can hold its first batch until the test has queued the rest.
#[derive(Default)]
struct Fake {
    runs: Mutex<Vec<Vec<usize>>>,
    gate: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    running: AtomicBool,
    per_text: Duration,
    /// Texts (token counts) run through `run_alone`.
    alone: Mutex<Vec<usize>>,
}

impl Backend for Fake {
    fn encode(&self, text: &str) -> Result<Encoded, ModelError> {
        Ok(Encoded {
            ids: vec![1; text.split(' ').count()],
            truncated: false,
        })
    }
    fn run(&self, batch: &[&Encoded]) -> Result<Vec<Prediction>, ModelError> {
        self.record(batch)
    }
    fn splits(&self) -> bool {
        true
    }
    fn run_alone(
        &self,
        text: &Encoded,
        _give_way: &dyn crate::model::GiveWay,
    ) -> Option<Result<Prediction, ModelError>> {
        self.alone.lock().unwrap().push(text.ids.len());
        Some(self.record(&[text]).map(|mut p| p.remove(0)))
    }
    fn load_id(&self) -> u64 {
        1
    }
    fn warm_per_text(&self) -> Option<Duration> {
        (!self.per_text.is_zero()).then_some(self.per_text)
    }
}

impl Fake {
    fn record(&self, batch: &[&Encoded]) -> Result<Vec<Prediction>, ModelError> {
        self.running.store(true, Ordering::SeqCst);
        let gate = self.gate.lock().unwrap().take();
        if let Some(gate) = gate {
            let _ = gate.recv();
        }
        std::thread::sleep(self.per_text * batch.len() as u32);
        let lens: Vec<usize> = batch.iter().map(|e| e.ids.len()).collect();
        self.runs.lock().unwrap().push(lens.clone());
        Ok(lens
            .iter()
            .map(|&n| Prediction {
                intent_probs: vec![n as f32],
                sentiment_probs: vec![1.0],
                embedding: Vec::new(),
                upset_probs: Vec::new(),
            })
            .collect())
    }
}

fn config(max_batch_size: usize, max_batch_tokens: usize, delay_ms: u64) -> BatcherConfig {
    BatcherConfig {
        workers: 1,
        queue_capacity: 256,
        max_batch_size,
        max_batch_tokens,
        max_queue_delay: Duration::from_millis(delay_ms),
        split_single_calls: false,
        max_padding_percent: 25,
    }
}

fn start(config: BatcherConfig, fake: Fake) -> (Arc<Batcher<Fake>>, Arc<Fake>) {
    let fake = Arc::new(fake);
    let registry = Arc::new(ModelRegistry::default());
    registry.activate(fake.clone());
    (Batcher::start(config, registry, None, None), fake)
}

/// A text of `n` words (tokens), unique by `tag`.
fn words(n: usize, tag: usize) -> String {
    let mut w = vec!["w".to_string(); n];
    w[n - 1] = format!("t{tag}");
    w.join(" ")
}

/// Hold the worker in a one-text batch, queue `texts` behind it, then let it go: the batches
/// that follow are formed from a full queue. Returns each request's answer and the batches run
/// after the held one.
async fn queued_behind_a_held_batch(
    batcher: &Arc<Batcher<Fake>>,
    fake: &Fake,
    texts: Vec<String>,
    deadline: Option<Instant>,
) -> (Vec<Result<Inferred<Fake>, BatchError>>, Vec<Vec<usize>>) {
    let (release, gate) = std::sync::mpsc::channel();
    *fake.gate.lock().unwrap() = Some(gate);
    let held = {
        let b = batcher.clone();
        tokio::spawn(async move { b.infer("held".into(), None).await })
    };
    while !fake.running.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let n = texts.len();
    let mut answers = Vec::new();
    let mut pending = Vec::new();
    for text in texts {
        match batcher.enqueue(text, deadline) {
            Ok(rx) => pending.push(Some(rx)),
            Err(e) => {
                answers.push((pending.len(), Err(e)));
                pending.push(None);
            }
        }
    }
    let queued = pending.iter().filter(|p| p.is_some()).count();
    while batcher.receiver.len() < queued {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    release.send(()).unwrap();
    held.await.unwrap().unwrap();
    let mut out: Vec<Option<Result<Inferred<Fake>, BatchError>>> = (0..n).map(|_| None).collect();
    for (i, e) in answers {
        out[i] = Some(e);
    }
    for (i, p) in pending.into_iter().enumerate() {
        if let Some(rx) = p {
            out[i] = Some(rx.await.unwrap());
        }
    }
    let runs = fake.runs.lock().unwrap()[1..].to_vec();
    (out.into_iter().map(Option::unwrap).collect(), runs)
}

fn rows(runs: &[Vec<usize>]) -> Vec<usize> {
    runs.iter().map(Vec::len).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_text_alone_in_the_server_runs_split() {
    let config = BatcherConfig {
        split_single_calls: true,
        ..config(32, 4096, 0)
    };
    let (batcher, fake) = start(config, Fake::default());
    batcher.infer(words(2, 0), None).await.unwrap();
    assert_eq!(*fake.alone.lock().unwrap(), [2]);
    fake.running.store(false, Ordering::SeqCst);
    // The held text is alone too; the three queued behind it run as one batch, not split.
    let texts = (1..4).map(|i| words(3, i)).collect();
    let (answers, runs) = queued_behind_a_held_batch(&batcher, &fake, texts, None).await;
    assert!(answers.iter().all(Result::is_ok));
    assert_eq!(rows(&runs[1..]), [3]);
    assert_eq!(fake.alone.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_closes_at_max_batch_size() {
    let (batcher, fake) = start(config(4, 4096, 0), Fake::default());
    let texts = (0..10).map(|i| words(3, i)).collect();
    let (answers, runs) = queued_behind_a_held_batch(&batcher, &fake, texts, None).await;
    assert!(answers.iter().all(Result::is_ok));
    assert_eq!(rows(&runs), [4, 4, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_closes_before_its_padded_tokens_pass_the_budget() {
    let (batcher, fake) = start(config(32, 20, 0), Fake::default());
    let texts = (0..5).map(|i| words(8, i)).collect();
    let (answers, runs) = queued_behind_a_held_batch(&batcher, &fake, texts, None).await;
    assert!(answers.iter().all(Result::is_ok));
    // 3 texts of 8 tokens would be 24 padded tokens: over 20.
    assert_eq!(rows(&runs), [2, 2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_waits_up_to_the_queue_delay_for_company() {
    let (batcher, fake) = start(config(32, 4096, 300), Fake::default());
    let first = {
        let b = batcher.clone();
        tokio::spawn(async move { b.infer(words(2, 1), None).await })
    };
    let second = batcher.infer(words(3, 2), None).await.unwrap();
    first.await.unwrap().unwrap();
    assert_eq!(second.batch_size, 2, "both texts in one batch");
    assert_eq!(rows(&fake.runs.lock().unwrap()), [2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_texts_are_not_padded_to_a_long_one() {
    let (batcher, fake) = start(config(32, 4096, 0), Fake::default());
    let texts = vec![words(2, 0), words(10, 1), words(2, 2), words(2, 3)];
    let (answers, runs) = queued_behind_a_held_batch(&batcher, &fake, texts, None).await;
    // Each answer is its own text's (the fake predicts its length), in request order.
    let lens: Vec<f32> = answers
        .iter()
        .map(|a| a.as_ref().unwrap().prediction.intent_probs[0])
        .collect();
    assert_eq!(lens, [2.0, 10.0, 2.0, 2.0]);
    // One batch of four, run as two length groups, the long one first.
    assert_eq!(runs, [vec![10], vec![2, 2, 2]]);
    assert!(answers.iter().all(|a| a.as_ref().unwrap().batch_size == 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_cannot_make_their_deadline_are_refused_up_front() {
    // 10 ms a text (from warm-up, before any batch ran); a request is admitted only if the
    // queue ahead of it takes at most half of the 200 ms it has.
    let fake = Fake {
        per_text: Duration::from_millis(10),
        ..Default::default()
    };
    let (batcher, fake) = start(config(1, 4096, 0), fake);
    let texts = (0..30).map(|i| words(2, i)).collect();
    let deadline = Some(Instant::now() + Duration::from_millis(200));
    let (answers, _) = queued_behind_a_held_batch(&batcher, &fake, texts, deadline).await;
    let refused: Vec<bool> = answers
        .iter()
        .map(|a| matches!(a, Err(BatchError::WouldMissDeadline { .. })))
        .collect();
    let first_refused = refused.iter().position(|&r| r).expect("some refused");
    assert!(first_refused > 0, "the first requests fit");
    assert!(
        refused[first_refused..].iter().all(|&r| r),
        "once the queue is too long, every later request is refused: {refused:?}"
    );
    assert!(
        first_refused <= 11,
        "admitted {first_refused} x 10 ms for 200 ms"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refusal_is_held_for_the_wait_at_most_half_the_time_left() {
    let started = tokio::time::Instant::now();
    let deadline = Some(Instant::now() + Duration::from_millis(100));
    let e = held(BatchError::WouldMissDeadline { wait_ms: 80 }, deadline).await;
    // Half of the time left (a little under 100 ms by now), and the hint cut by as much.
    assert!(
        matches!(e, BatchError::WouldMissDeadline { wait_ms: 30..=31 }),
        "{e:?}"
    );
    let hold = started.elapsed();
    assert!(
        hold > Duration::from_millis(45) && hold <= Duration::from_millis(50),
        "{hold:?}"
    );
    // A short wait is held only that long; no deadline: at most MAX_HOLD.
    let started = tokio::time::Instant::now();
    let e = held(BatchError::WouldMissDeadline { wait_ms: 20 }, deadline).await;
    assert!(
        matches!(e, BatchError::WouldMissDeadline { wait_ms: 0 }),
        "{e:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(20));
    let started = tokio::time::Instant::now();
    let full = BatchError::QueueFull {
        capacity: 8,
        wait_ms: 900,
    };
    let e = held(full, None).await;
    assert!(
        matches!(e, BatchError::QueueFull { wait_ms: 800, .. }),
        "{e:?}"
    );
    assert_eq!(started.elapsed(), MAX_HOLD);
    // Other errors are not held.
    let started = tokio::time::Instant::now();
    assert!(matches!(
        held(BatchError::NoModel, deadline).await,
        BatchError::NoModel
    ));
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_deadline_passes_in_the_queue_is_not_run() {
    let (batcher, fake) = start(config(32, 4096, 0), Fake::default());
    let (release, gate) = std::sync::mpsc::channel();
    *fake.gate.lock().unwrap() = Some(gate);
    let held = {
        let b = batcher.clone();
        tokio::spawn(async move { b.infer("held".into(), None).await })
    };
    while !fake.running.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rx = batcher
        .enqueue(
            words(2, 1),
            Some(Instant::now() + Duration::from_millis(20)),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    release.send(()).unwrap();
    held.await.unwrap().unwrap();
    assert!(matches!(
        rx.await.unwrap(),
        Err(BatchError::DeadlineExceeded)
    ));
    assert_eq!(
        rows(&fake.runs.lock().unwrap()),
        [1],
        "only the held batch ran"
    );
}

#[test]
fn a_worker_leaves_the_others_their_share_of_the_queue() {
    use super::worker::batch_limit;
    // Two workers: one queued behind the first text is left to the other worker.
    assert_eq!(batch_limit(1, 2, 32), 1);
    assert_eq!(batch_limit(0, 2, 32), 1);
    assert_eq!(batch_limit(3, 2, 32), 2);
    // A long queue still fills a batch, up to its size.
    assert_eq!(batch_limit(63, 2, 32), 32);
    assert_eq!(batch_limit(200, 2, 32), 32);
    // One worker takes all it may.
    assert_eq!(batch_limit(5, 1, 32), 6);
}
