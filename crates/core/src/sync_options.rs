//! Sync options: how an object is applied, pruned and compared — per Application (its
//! `syncPolicy.syncOptions`) and per object (an annotation), as Argo CD spells them so
//! its repositories work unchanged:
//!
//! | option | effect |
//! | --- | --- |
//! | `CreateNamespace=true` | create the destination namespace when it is missing (Application only) |
//! | `Prune=false` | never prune the object (as `capstan.dev/prune: "false"`); `Prune=confirm`: only once confirmed |
//! | `Delete=false` | keep the object when the Application is deleted; `Delete=confirm`: only once confirmed |
//! | `PrunePropagationPolicy=foreground\|background\|orphan` | how a prune deletes dependents (default background) |
//! | `FailOnSharedResource=true` | refuse to take over an object another Application manages |
//! | `Replace=true` | replace (PUT, or create) instead of applying |
//! | `Force=true` | with `Replace=true`: delete and create again; otherwise take over conflicting fields |
//! | `ServerSideApply=false` | client-side apply: a three-way merge with the `kubectl.kubernetes.io/last-applied-configuration` annotation |
//! | `Validate=false` | the API server does not validate the object's fields |
//! | `PruneLast=true` | prune after every wave (Capstan always prunes last) |
//! | `ApplyOutOfSyncOnly=true` | apply only what differs (Capstan always does) |
//! | `RespectIgnoreDifferences=true` | leave ignored fields alone when applying (Capstan always does) |
//! | `SkipDryRunOnMissingResource=true` | plan an object whose kind the cluster does not serve yet without a dry run |
//! | `IgnoreExtraneous` (compare option) | an object left in the cluster does not make the Application OutOfSync (pruning still removes it) |
//! | `ServerSideDiff`, `IncludeMutationWebhook` (compare options) | accepted: Capstan always compares with the server's dry run |
//!
//! Annotations: `capstan.dev/sync-options` or `argocd.argoproj.io/sync-options` (a
//! comma-separated list), `capstan.dev/compare-options` or
//! `argocd.argoproj.io/compare-options`. An option Capstan does not know is an error
//! naming it, never ignored.

use serde_json::Value;

/// Capstan's per-object sync-options annotation.
pub const SYNC_OPTIONS_ANNOTATION: &str = "capstan.dev/sync-options";
/// Argo CD's per-object sync-options annotation.
pub const ARGO_SYNC_OPTIONS_ANNOTATION: &str = "argocd.argoproj.io/sync-options";
/// Capstan's per-object compare-options annotation.
pub const COMPARE_OPTIONS_ANNOTATION: &str = "capstan.dev/compare-options";
/// Argo CD's per-object compare-options annotation.
pub const ARGO_COMPARE_OPTIONS_ANNOTATION: &str = "argocd.argoproj.io/compare-options";

/// An option that is not one Capstan knows, or a value it cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option:?} is not a sync option Capstan knows ({reason})")]
pub struct SyncOptionError {
    /// The option as written.
    pub option: String,
    /// Why.
    pub reason: String,
}

/// Whether an object may be pruned (or deleted with its Application).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Permission {
    /// Yes (the default).
    #[default]
    Allow,
    /// Never (`Prune=false`, `Delete=false`).
    Deny,
    /// Only once someone confirmed it (`Prune=confirm`, `Delete=confirm`).
    Confirm,
}

/// How a prune deletes an object's dependents (`PrunePropagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// Delete the object now, its dependents in the background (the default).
    #[default]
    Background,
    /// Delete the dependents first, then the object.
    Foreground,
    /// Delete the object, leave its dependents.
    Orphan,
}

impl Propagation {
    /// The name the Kubernetes API gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Background => "Background",
            Propagation::Foreground => "Foreground",
            Propagation::Orphan => "Orphan",
        }
    }
}

/// How objects are synced, after Application defaults and object annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOptionSet {
    /// Create the destination namespace when missing.
    pub create_namespace: bool,
    /// May be pruned.
    pub prune: Permission,
    /// Is deleted with the Application (when it deletes its resources).
    pub delete: Permission,
    /// How pruning deletes dependents.
    pub prune_propagation: Propagation,
    /// Replaced instead of applied.
    pub replace: bool,
    /// With `replace`: deleted and created again; else conflicts are forced.
    pub force: bool,
    /// Applied server-side (else client-side with the last-applied annotation).
    pub server_side_apply: bool,
    /// Validated by the API server.
    pub validate: bool,
    /// Planned without a dry run when its kind is not served yet.
    pub skip_dry_run_on_missing_resource: bool,
    /// Refuse to take over an object another Application manages.
    pub fail_on_shared_resource: bool,
    /// Left in the cluster without making the Application OutOfSync.
    pub ignore_extraneous: bool,
}

impl Default for SyncOptionSet {
    fn default() -> Self {
        SyncOptionSet {
            create_namespace: false,
            prune: Permission::Allow,
            delete: Permission::Allow,
            prune_propagation: Propagation::Background,
            replace: false,
            force: false,
            server_side_apply: true,
            validate: true,
            skip_dry_run_on_missing_resource: false,
            fail_on_shared_resource: false,
            ignore_extraneous: false,
        }
    }
}

const KNOWN: &str = "known: CreateNamespace, Prune, Delete, PrunePropagationPolicy, Replace, Force, ServerSideApply, Validate, SkipDryRunOnMissingResource, FailOnSharedResource, PruneLast, ApplyOutOfSyncOnly, RespectIgnoreDifferences; compare options IgnoreExtraneous, ServerSideDiff, IncludeMutationWebhook";

impl SyncOptionSet {
    /// These options with `list` applied (`Key=Value` entries, as in
    /// `syncPolicy.syncOptions` or an annotation).
    pub fn with<'a>(
        mut self,
        list: impl IntoIterator<Item = &'a str>,
    ) -> Result<SyncOptionSet, SyncOptionError> {
        for raw in list {
            let opt = raw.trim();
            if opt.is_empty() {
                continue;
            }
            self.set(opt)?;
        }
        Ok(self)
    }

    fn set(&mut self, opt: &str) -> Result<(), SyncOptionError> {
        let err = |reason: &str| SyncOptionError {
            option: opt.to_string(),
            reason: reason.to_string(),
        };
        if opt == "IgnoreExtraneous" {
            self.ignore_extraneous = true;
            return Ok(());
        }
        let (key, value) = opt
            .split_once('=')
            .ok_or_else(|| err("expected Key=Value"))?;
        let value = value.trim();
        let flag = || match value {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(err("the value must be true or false")),
        };
        let permission = || match value {
            "true" => Ok(Permission::Allow),
            "false" => Ok(Permission::Deny),
            "confirm" => Ok(Permission::Confirm),
            _ => Err(err("the value must be true, false or confirm")),
        };
        match key.trim() {
            "CreateNamespace" => self.create_namespace = flag()?,
            "Prune" => self.prune = permission()?,
            "Delete" => self.delete = permission()?,
            "PrunePropagationPolicy" => {
                self.prune_propagation = match value.to_ascii_lowercase().as_str() {
                    "background" => Propagation::Background,
                    "foreground" => Propagation::Foreground,
                    "orphan" => Propagation::Orphan,
                    _ => return Err(err("the value must be foreground, background or orphan")),
                }
            }
            "Replace" => self.replace = flag()?,
            "Force" => self.force = flag()?,
            "ServerSideApply" => self.server_side_apply = flag()?,
            "Validate" => self.validate = flag()?,
            "SkipDryRunOnMissingResource" => self.skip_dry_run_on_missing_resource = flag()?,
            "FailOnSharedResource" => self.fail_on_shared_resource = flag()?,
            // what Capstan always does: accepted (the value still checked), nothing to change
            "PruneLast"
            | "ApplyOutOfSyncOnly"
            | "RespectIgnoreDifferences"
            | "ServerSideDiff"
            | "IncludeMutationWebhook" => {
                flag()?;
            }
            _ => return Err(err(KNOWN)),
        }
        Ok(())
    }

    /// These options with an object's sync- and compare-options annotations applied.
    pub fn for_object(self, obj: &Value) -> Result<SyncOptionSet, SyncOptionError> {
        let ann = |k: &str| {
            obj.pointer("/metadata/annotations")
                .and_then(|a| a.get(k))
                .and_then(Value::as_str)
        };
        let mut out = self;
        for key in [
            SYNC_OPTIONS_ANNOTATION,
            ARGO_SYNC_OPTIONS_ANNOTATION,
            COMPARE_OPTIONS_ANNOTATION,
            ARGO_COMPARE_OPTIONS_ANNOTATION,
        ] {
            if let Some(v) = ann(key) {
                out = out.with(v.split(','))?;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_parse_as_argo_cd_spells_them() {
        let o = SyncOptionSet::default()
            .with([
                "CreateNamespace=true",
                "Prune=false",
                " Replace=true ",
                "ServerSideApply=false",
            ])
            .unwrap();
        assert!(o.create_namespace && o.replace && !o.server_side_apply);
        assert_eq!((o.prune, o.delete), (Permission::Deny, Permission::Allow));
        assert!(o.validate);
        let o = SyncOptionSet::default()
            .with([
                "Prune=confirm",
                "PrunePropagationPolicy=foreground",
                "FailOnSharedResource=true",
            ])
            .unwrap();
        assert_eq!(o.prune, Permission::Confirm);
        assert_eq!(o.prune_propagation, Propagation::Foreground);
        assert!(o.fail_on_shared_resource);
        let o = SyncOptionSet::default()
            .with(["PruneLast=true", "ApplyOutOfSyncOnly=true"])
            .unwrap();
        assert_eq!(o, SyncOptionSet::default());
    }

    #[test]
    fn an_unknown_option_is_an_error_naming_it() {
        let e = SyncOptionSet::default().with(["Prune=maybe"]).unwrap_err();
        assert_eq!(e.option, "Prune=maybe");
        let e = SyncOptionSet::default()
            .with(["Frobnicate=true"])
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("\"Frobnicate=true\" is not a sync option"),
            "{e}"
        );
    }

    #[test]
    fn annotations_override_the_application_defaults() {
        let app = SyncOptionSet::default().with(["Validate=false"]).unwrap();
        let obj = json!({"metadata": {"annotations": {
            ARGO_SYNC_OPTIONS_ANNOTATION: "Prune=false,Delete=false",
            ARGO_COMPARE_OPTIONS_ANNOTATION: "IgnoreExtraneous",
        }}});
        let o = app.for_object(&obj).unwrap();
        assert!(!o.validate && o.ignore_extraneous);
        assert_eq!((o.prune, o.delete), (Permission::Deny, Permission::Deny));
    }
}
