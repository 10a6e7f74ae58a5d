//! Sync waves: the order in which groups of objects are applied.

use serde_json::Value;

/// The annotation giving an object's sync wave (an integer, default 0).
pub const SYNC_WAVE_ANNOTATION: &str = "capstan.dev/sync-wave";
/// Argo CD's sync-wave annotation, read when Capstan's is absent.
pub const ARGO_SYNC_WAVE_ANNOTATION: &str = "argocd.argoproj.io/sync-wave";
/// Helm's hook weight, the wave of a Helm hook when neither of the above is set.
pub const HELM_HOOK_WEIGHT_ANNOTATION: &str = "helm.sh/hook-weight";

/// A sync wave, parsed once from [`SYNC_WAVE_ANNOTATION`]. Lower waves go first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncWave(pub i32);

/// A sync-wave annotation that is not an integer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {annotation} must be an integer, got {value:?}")]
pub struct SyncWaveError {
    /// The annotation.
    pub annotation: &'static str,
    /// Its value.
    pub value: String,
}

impl SyncWave {
    /// The wave of an object: its annotation, or 0 when absent. Malformed is an error,
    /// never a silent 0.
    /// Capstan's annotation wins over Argo CD's, which wins over Helm's hook weight.
    pub fn of(obj: &Value) -> Result<Self, SyncWaveError> {
        let annotations = obj.get("metadata").and_then(|m| m.get("annotations"));
        let found = [
            SYNC_WAVE_ANNOTATION,
            ARGO_SYNC_WAVE_ANNOTATION,
            HELM_HOOK_WEIGHT_ANNOTATION,
        ]
        .into_iter()
        .find_map(|a| annotations.and_then(|m| m.get(a)).map(|v| (a, v)));
        match found {
            None => Ok(SyncWave(0)),
            Some((annotation, Value::String(s))) => {
                s.trim().parse().map(SyncWave).map_err(|_| SyncWaveError {
                    annotation,
                    value: s.clone(),
                })
            }
            Some((annotation, other)) => Err(SyncWaveError {
                annotation,
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
        let argo = json!({"metadata": {"annotations": {ARGO_SYNC_WAVE_ANNOTATION: "1"}}});
        assert_eq!(SyncWave::of(&argo).unwrap(), SyncWave(1));
        let helm = json!({"metadata": {"annotations": {HELM_HOOK_WEIGHT_ANNOTATION: "1"}}});
        assert_eq!(SyncWave::of(&helm).unwrap(), SyncWave(1));
        let both = json!({"metadata": {"annotations": {SYNC_WAVE_ANNOTATION: "-1", ARGO_SYNC_WAVE_ANNOTATION: "5"}}});
        assert_eq!(SyncWave::of(&both).unwrap(), SyncWave(-1));
        let e =
            SyncWave::of(&json!({"metadata": {"annotations": {ARGO_SYNC_WAVE_ANNOTATION: "x"}}}))
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            "annotation argocd.argoproj.io/sync-wave must be an integer, got \"x\""
        );
    }
}
