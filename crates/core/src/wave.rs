//! Sync waves: the order in which groups of objects are applied.

use serde_json::Value;

/// The annotation giving an object's sync wave (an integer, default 0).
pub const SYNC_WAVE_ANNOTATION: &str = "capstan.dev/sync-wave";

/// A sync wave, parsed once from [`SYNC_WAVE_ANNOTATION`]. Lower waves go first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncWave(pub i32);

/// A sync-wave annotation that is not an integer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {SYNC_WAVE_ANNOTATION} must be an integer, got {value:?}")]
pub struct SyncWaveError {
    /// The annotation's value.
    pub value: String,
}

impl SyncWave {
    /// The wave of an object: its annotation, or 0 when absent. Malformed is an error,
    /// never a silent 0.
    pub fn of(obj: &Value) -> Result<Self, SyncWaveError> {
        let ann = obj
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(SYNC_WAVE_ANNOTATION));
        match ann {
            None => Ok(SyncWave(0)),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(SyncWave)
                .map_err(|_| SyncWaveError { value: s.clone() }),
            Some(other) => Err(SyncWaveError {
                value: other.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with(v: Value) -> Value {
        json!({"metadata": {"annotations": {SYNC_WAVE_ANNOTATION: v}}})
    }

    #[test]
    fn waves_parse_or_fail_loudly() {
        assert_eq!(SyncWave::of(&json!({"metadata": {}})).unwrap(), SyncWave(0));
        assert_eq!(SyncWave::of(&with(json!("-2"))).unwrap(), SyncWave(-2));
        assert_eq!(SyncWave::of(&with(json!(" 5 "))).unwrap(), SyncWave(5));
        let e = SyncWave::of(&with(json!("first"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "annotation capstan.dev/sync-wave must be an integer, got \"first\""
        );
        assert!(
            SyncWave::of(&with(json!(3))).is_err(),
            "annotations are strings"
        );
    }
}
