//! One text on two threads: the package's tensor-parallel stages give what the whole graph gives,
//! and the server runs a call that way only when it is alone (counted on /metrics by mode).

mod common;

use common::{counter, Server};
use handoff::grpc::pb::ClassifyBatchRequest;
use handoff::model::{GiveWay, Model, Never};

const TEXTS: &[&str] = &[
    "转人工",
    "hi",
    "我的账号被盗了，有人在转我的钱，快帮我冻结！！",
    "I was charged twice for the same order and the bot keeps sending me the FAQ link 😡",
    "@ShopHelp thanks for nothing, 3 weeks and still no refund #fail",
];

#[test]
fn split_runs_give_the_whole_graphs_outputs() {
    let model = Model::load(&common::model_dir()).unwrap();
    assert!(model.has_parallel_stages());
    // f32 stages agree with the whole graph to ~1e-5; int8 activations may round a step apart,
    // which the package's manifest allows for.
    let declared = model.manifest.parallel.as_ref().unwrap().tolerance;
    let tolerance = if declared > 1e-3 { declared } else { 1e-4 };
    let long = "my parcel is late again and nobody answers ".repeat(20); // past max_tokens
    for text in TEXTS.iter().copied().chain([long.as_str()]) {
        let encoded = model.encode(text).unwrap();
        let whole = model.run(&[&encoded]).unwrap().remove(0);
        let split = model
            .run_split(&encoded, &Never)
            .expect("stages idle")
            .unwrap();
        for (head, a, b) in [
            ("intent", &whole.intent_probs, &split.intent_probs),
            ("sentiment", &whole.sentiment_probs, &split.sentiment_probs),
            ("embedding", &whole.embedding, &split.embedding),
        ] {
            assert_eq!(a.len(), b.len(), "{head} width for {text:?}");
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(diff < tolerance, "{head} differs by {diff} for {text:?}");
        }
        assert_eq!(whole.top_intent(), split.top_intent(), "{text:?}");
    }
}

/// Asks the split run to give way once `after` stages have been asked about, and records when the
/// helper left.
struct AskAfter {
    after: usize,
    asked: std::cell::Cell<usize>,
    left_at: std::cell::Cell<Option<usize>>,
}

impl GiveWay for AskAfter {
    fn asked(&self) -> bool {
        self.asked.set(self.asked.get() + 1);
        self.asked.get() > self.after
    }
    fn helper_left(&self) {
        self.left_at.set(Some(self.asked.get()));
    }
}

/// A split run that gives way at any stage (the helper stops, the leader runs the rest of half 1)
/// still gives the whole graph's outputs, and tells the batcher that the helper's core is free.
#[test]
fn a_split_run_that_gives_way_at_any_stage_gives_the_whole_graphs_outputs() {
    let model = Model::load(&common::model_dir()).unwrap();
    let text = "I was charged twice for the same order and nobody answers, get me a person";
    let encoded = model.encode(text).unwrap();
    let whole = model.run(&[&encoded]).unwrap().remove(0);
    let mut gave_way = 0;
    for after in 0..16 {
        let ask = AskAfter {
            after,
            asked: Default::default(),
            left_at: Default::default(),
        };
        let split = model
            .run_split(&encoded, &ask)
            .expect("stages idle")
            .unwrap();
        let diff = whole
            .intent_probs
            .iter()
            .chain(&whole.embedding)
            .zip(split.intent_probs.iter().chain(&split.embedding))
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-4, "asked after {after} stages: differs by {diff}");
        // 6 layers are 12 stages, asked about before each but the first. The helper may be one
        // stage ahead of the leader, so an ask with two stages or more to go always stops it.
        if after + 3 <= 11 {
            assert!(
                ask.left_at.get().is_some(),
                "asked after {after}: the helper gave way"
            );
            gave_way += 1;
        }
        if ask.asked.get() <= after {
            assert_eq!(ask.left_at.get(), None, "never asked, never left");
        }
    }
    assert_eq!(gave_way, 9);
}

async fn runs(server: &Server) -> (f64, f64) {
    let m = server.metrics();
    (
        counter(&m, r#"handoff_inference_runs_total{mode="split"}"#),
        counter(&m, r#"handoff_inference_runs_total{mode="whole"}"#),
    )
}

#[tokio::test]
async fn a_lone_call_runs_split_a_batch_does_not_and_the_setting_turns_it_off() {
    let server = Server::start(&[]);
    let lone = common::classify(&server, "I want a real person").await;
    assert_eq!(lone.timing.unwrap().batch_size, 1);
    assert_eq!(runs(&server).await, (1.0, 0.0), "a lone call runs split");
    let texts: Vec<String> = TEXTS.iter().map(|t| format!("{t} (batch)")).collect();
    let mut client = common::client(&server).await;
    client
        .classify_batch(ClassifyBatchRequest { texts })
        .await
        .unwrap();
    let (split, whole) = runs(&server).await;
    assert!(whole >= 1.0, "texts queued together run as a batch");
    assert!(
        split <= 2.0,
        "at most the first text of the batch ran alone"
    );

    let off = Server::start(&["--set", "split_single_calls=false"]);
    common::classify(&off, "I want a real person").await;
    assert_eq!(runs(&off).await, (0.0, 1.0), "split_single_calls = false");
}
