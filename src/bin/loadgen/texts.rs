//! The messages the load generator sends. Engine comparisons use unique texts (a counter appended),
//! so no result cache can help; the repeat mix shows what the cache adds on realistic traffic.

use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;

/// Chat-style customer messages, Chinese, English and mixed, short and long.
pub const MESSAGES: &[&str] = &[
    "转人工",
    "我的订单到哪了？三天了还没发货",
    "where is my order #A20231108 ??",
    "I want to talk to a real person",
    "退款什么时候到账啊，等了一个星期了[怒]",
    "my account was hacked, someone changed my password!!!",
    "发票怎么开，公司报销要用",
    "the app keeps crashing after the update 😤",
    "你好",
    "thanks, that solved it 👍",
    "这个有蓝色的吗？165穿多大码",
    "cancel my subscription pls",
    "你们客服态度太差了，我要投诉！！！",
    "how do I return this? it doesn't fit",
    "付款失败了，钱扣了订单没生成",
    "能不能帮我查一下物流 SF1234567890",
    "I was charged twice for the same order, please fix this asap",
    "我不用人工，告诉我价格就行",
    "宽带一直断网，路由器重启也没用，到底怎么回事，明天还要在家办公呢",
    "hello, is the 256GB version in stock? and do you ship to Shenzhen",
    "我要退货，衣服质量太差了 洗一次就掉色",
    "pls help my order still says processing after 5 days, this is ridiculous",
    "账号被盗了 有人在用我的卡买东西 快帮我冻结",
    "ok",
    "怎么关闭自动续费，我没同意扣款",
    "is there a human I can chat with? the bot doesn't understand me",
];

/// Short formulaic messages customers send again and again, word for word.
pub const FREQUENT: &[&str] = &[
    "转人工",
    "人工",
    "人工客服",
    "在吗",
    "你好",
    "谢谢",
    "好的",
    "?",
    "??",
    "hi",
    "hello",
    "thanks",
    "thank you",
    "ok",
    "agent",
    "human",
    "yes",
    "no",
    "退款",
    "查物流",
];

/// Share of the repeat mix drawn word for word from `FREQUENT`: in chat logs a third or more of
/// customer turns are greetings, acknowledgements and bare requests for a person; we take 35 %.
pub const REPEAT_SHARE: f64 = 0.35;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Every text unique: engine against engine, no cache can help.
    Unique,
    /// `REPEAT_SHARE` of texts from `FREQUENT`, the rest unique.
    Repeats,
    /// This share (percent) of texts from `FREQUENT`, the rest unique.
    RepeatsPercent(u8),
    /// This text with the counter appended: one message length.
    Padded(&'static str),
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub fn pick(rng: &mut impl Rng) -> &'static str {
    MESSAGES[rng.gen_range(0..MESSAGES.len())]
}

pub fn next(mix: Mix, rng: &mut impl Rng) -> String {
    let repeats = match mix {
        Mix::Repeats => REPEAT_SHARE,
        Mix::RepeatsPercent(p) => f64::from(p) / 100.0,
        _ => 0.0,
    };
    if repeats > 0.0 && rng.gen_bool(repeats) {
        return FREQUENT[rng.gen_range(0..FREQUENT.len())].to_string();
    }
    let base = match mix {
        Mix::Padded(text) => text,
        _ => pick(rng),
    };
    format!("{base} {}", COUNTER.fetch_add(1, Ordering::Relaxed))
}
