//! Property tests (proptest) over the parsers and the input path: whatever comes in, nothing panics,
//! and bad input gets a clear refusal. Bounded: a few hundred cases per property, seconds in all.
//! Raise the budget with `PROPTEST_CASES=20000 cargo test --release --test fuzz`.

mod common;

use std::sync::LazyLock;

use handoff::audit::redact::redact;
use handoff::grpc::pb::{ClassifyRequest, RouteRequest};
use handoff::model::Model;
use handoff::policy::expr::Expr;
use handoff::policy::{Policy, PolicyConfig};
use proptest::prelude::*;

/// Cases per property: `default`, or PROPTEST_CASES for a longer run.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

static MODEL: LazyLock<Model> = LazyLock::new(|| Model::load(&common::model_dir()).unwrap());

/// Text that looks like conditions: signal names, operators, literals, noise.
fn condition_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("negativity".to_string()),
        Just("intent".to_string()),
        Just("attr.plan".to_string()),
        Just("threat".to_string()),
        Just("and".to_string()),
        Just("or".to_string()),
        Just("not".to_string()),
        Just("in".to_string()),
        Just(">=".to_string()),
        Just("==".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just("'refund'".to_string()),
        Just("'vip".to_string()),
        "-?[0-9]{0,3}\\.?[0-9]{0,3}(e-?[0-9])?",
        "\\PC{0,4}",
    ];
    prop::collection::vec(token, 0..12).prop_map(|t| t.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn conditions_parse_or_fail_with_a_position_inside(src in prop_oneof![condition_like(), "\\PC{0,40}"]) {
        match Expr::parse(&src) {
            Ok(e) => {
                // Whatever parsed can be evaluated and explained.
                let v = Default::default();
                if e.eval(&v) {
                    e.explain(&v, &mut Vec::new());
                }
                let _ = e.implies(&e);
            }
            Err(err) => prop_assert!(err.at <= src.len(), "{err:?} for {src:?}"),
        }
    }

    #[test]
    fn policy_files_load_or_fail_without_panicking(
        at in 0usize..4000,
        cut in 0usize..200,
        insert in prop_oneof![condition_like(), "\\PC{0,20}", Just("\"".to_string()), Just("\n[[rules]]\n".to_string())],
    ) {
        // The built-in policy with a slice replaced: most results are broken files.
        let base = handoff::policy::config::BUILTIN;
        let at = base.char_indices().map(|(i, _)| i).find(|i| *i >= at.min(base.len())).unwrap_or(base.len());
        let end = base[at..].char_indices().map(|(i, _)| at + i).find(|i| *i >= at + cut).unwrap_or(base.len());
        let text = format!("{}{insert}{}", &base[..at], &base[end..]);
        let path = std::env::temp_dir().join(format!("handoff-fuzz-{}.toml", std::process::id()));
        std::fs::write(&path, &text).unwrap();
        let labels: Vec<String> = MODEL.intent_labels().to_vec();
        if let Err(e) = handoff::policy::file::load(&path, Some(&labels)) {
            prop_assert!(!e.message.is_empty());
            if let Some(line) = e.line {
                prop_assert!(line >= 1 && line <= text.lines().count() + 1, "{e}");
            }
        }
        if let Ok(config) = toml::from_str::<PolicyConfig>(&text) {
            let _ = Policy::new(config);
        }
    }

    #[test]
    fn any_text_tokenises_within_the_model_limit(text in "\\PC{0,300}|[\\u{0}-\\u{10FFFF}]{0,50}") {
        let encoded = MODEL.encode(&text).unwrap();
        prop_assert!(encoded.ids.len() <= 128 && encoded.ids.len() >= 2);
    }

    #[test]
    fn redaction_never_panics_and_removes_embedded_mobiles(
        before in "\\PC{0,30}",
        after in "\\PC{0,30}",
        number in "1[3-9][0-9]{9}",
    ) {
        let text = format!("{before} {number} {after}");
        prop_assert!(!redact(&text).contains(&number), "{text:?} → {:?}", redact(&text));
        let _ = redact(&before);
    }
}

proptest! {
    // Each case is a gRPC round trip through the real server: fewer of them.
    #![proptest_config(ProptestConfig::with_cases(cases(96)))]

    #[test]
    fn the_server_answers_any_input_with_ok_or_invalid_argument(
        text in "\\PC{0,200}|[\\u{0}-\\u{7F}]{0,20}|.{4000,4200}",
        conversation in "\\PC{0,140}",
        channel in -2i32..10,
        attr_key in "[a-zA-Z_!]{0,70}",
    ) {
        static RT: LazyLock<tokio::runtime::Runtime> =
            LazyLock::new(|| tokio::runtime::Runtime::new().unwrap());
        let codes = RT.block_on(async {
            let mut client = common::client(common::shared()).await;
            let classify = client.classify(ClassifyRequest { text: text.clone() }).await;
            let route = client
                .route(RouteRequest {
                    conversation_id: conversation.clone(),
                    text: text.clone(),
                    channel,
                    attributes: [(attr_key.clone(), "v".to_string())].into(),
                    ..Default::default()
                })
                .await;
            [classify.map(|_| ()), route.map(|_| ())].map(|r| r.map_or_else(|s| s.code(), |_| tonic::Code::Ok))
        });
        for code in codes {
            prop_assert!(
                matches!(code, tonic::Code::Ok | tonic::Code::InvalidArgument),
                "{code:?} for text {text:?}"
            );
        }
    }
}
