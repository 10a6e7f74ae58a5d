//! Durations as Argo CD and Flux write them (`5m0s`, `1h`, `30`) → as Capstan's schema
//! takes them (`^([0-9]+(ms|s|m|h))+$`).

/// The Capstan spelling of `text`, or `None` when it has none (`1.5h`, `300us`).
/// A bare number is seconds, as Argo CD reads it.
pub(crate) fn normalize(text: &str) -> Option<String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!("{t}s"));
    }
    is_capstan(t).then(|| t.to_string())
}

fn is_capstan(t: &str) -> bool {
    let mut rest = t;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// The shorter of two durations (either may be absent), for an interval taken from
/// both a source and the object that uses it.
pub(crate) fn shorter(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let (da, db) = (seconds(&a), seconds(&b));
            Some(if db < da { b } else { a })
        }
        (a, b) => a.or(b),
    }
}

fn seconds(t: &str) -> f64 {
    let mut total = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: f64 = rest[..digits].parse().unwrap_or(0.0);
        rest = &rest[digits..];
        let (factor, len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else {
            return f64::MAX;
        };
        total += n * factor;
        rest = &rest[len..];
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_and_argo_durations_become_capstans() {
        assert_eq!(normalize("5m0s").as_deref(), Some("5m0s"));
        assert_eq!(normalize("1h30m").as_deref(), Some("1h30m"));
        assert_eq!(normalize("30").as_deref(), Some("30s"));
        assert_eq!(normalize("500ms").as_deref(), Some("500ms"));
        assert_eq!(normalize("1.5h"), None);
        assert_eq!(normalize("300us"), None);
        assert_eq!(normalize(""), None);
    }

    #[test]
    fn the_shorter_interval_wins() {
        assert_eq!(
            shorter(Some("1h".into()), Some("1m0s".into())).as_deref(),
            Some("1m0s")
        );
        assert_eq!(shorter(None, Some("5m".into())).as_deref(), Some("5m"));
    }
}
