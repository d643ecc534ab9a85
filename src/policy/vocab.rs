//! The policy's vocabulary: actions, channels, tiers and who holds a conversation, each with its
//! one list of names (the policy file, signals, logs and metrics all use these names).

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub const NAMES: &'static [&'static str] = &[$($text),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            pub fn parse(name: &str) -> Option<$name> {
                match name { $($text => Some($name::$variant),)* _ => None }
            }
        }
    };
}

vocabulary! {
    /// What a decision tells the caller to do.
    Action { ContinueBot "continue_bot", OfferHuman "offer_human", Escalate "escalate" }
}

vocabulary! {
    #[derive(Default)]
    Channel {
        #[default] Unspecified "unspecified", Web "web", App "app", WeChat "wechat", WhatsApp "whatsapp",
        Sms "sms", Email "email", Voice "voice",
    }
}

vocabulary! {
    #[derive(Default)]
    Tier { #[default] Standard "standard", Vip "vip" }
}

vocabulary! {
    /// Who has the conversation: the bot, the bot with a person offered, or a person (queued or
    /// talking) until the caller hands it back.
    #[derive(Default, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    Holder { #[default] Bot "bot", Offered "offered", Person "person" }
}

impl From<super::RuleAction> for Action {
    fn from(a: super::RuleAction) -> Self {
        match a {
            super::RuleAction::ContinueBot => Action::ContinueBot,
            super::RuleAction::OfferHuman => Action::OfferHuman,
            super::RuleAction::Escalate => Action::Escalate,
        }
    }
}
