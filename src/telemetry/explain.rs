//! An error as one line for a person: the message, then each cause the message does not already
//! say. Many library errors print their source inside their own message too, and anyhow's `{:#}`
//! would print it twice ("… (os error 2): No such file or directory (os error 2)").

/// `error: cause: cause`, each part once.
pub fn explain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read manifest.toml: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::from(Repeats(io)).context("model package m/1.0.0");
        assert_eq!(
            explain(&e),
            "model package m/1.0.0: cannot read manifest.toml: no such file"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(explain(&plain), "outer: inner");
    }
}
