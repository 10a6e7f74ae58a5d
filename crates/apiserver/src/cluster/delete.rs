//! delete and deletecollection: preconditions, propagation policies, finalizers.
//!
//! An object without finalizers is removed at once. Otherwise it gets a
//! `deletionTimestamp` and stays until the last finalizer is removed; `Foreground`
//! and `Orphan` propagation add the `foregroundDeletion` / `orphan` finalizers that the
//! garbage collector acts on. Namespaces and CRDs are held by their own finalizers
//! until their content is gone.

use serde_json::{Value, json};

use super::Cluster;
use super::read::ListOptions;
use super::write::blocks_deletion;
use crate::error::{ApiError, Result};
use crate::meta;
use crate::registry::ResourceDef;

/// What happens to dependents (objects whose ownerReferences name the deleted one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents keep existing; their ownerReferences to the object are removed.
    Orphan,
    /// The object goes now; the garbage collector deletes dependents afterwards.
    Background,
    /// Dependents are deleted first; the object goes when they are gone.
    Foreground,
}

impl Propagation {
    /// Parse `propagationPolicy`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "Orphan" => Ok(Propagation::Orphan),
            "Background" => Ok(Propagation::Background),
            "Foreground" => Ok(Propagation::Foreground),
            other => Err(ApiError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                vec![crate::error::Cause::unsupported(
                    "propagationPolicy",
                    &json!(other),
                    &["Foreground".into(), "Background".into(), "Orphan".into()],
                )],
            )),
        }
    }
}

/// `DeleteOptions.preconditions`.
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    /// The object must have this uid.
    pub uid: Option<String>,
    /// The object must have this resourceVersion.
    pub resource_version: Option<String>,
}

impl Preconditions {
    /// A uid precondition only (what a PUT naming a uid asks for).
    pub fn uid(uid: &str) -> Self {
        Preconditions {
            uid: (!uid.is_empty()).then(|| uid.to_string()),
            resource_version: None,
        }
    }

    /// Check `obj` (stored as `def`): 409 Conflict when a precondition fails.
    pub fn check(&self, def: &ResourceDef, obj: &Value) -> Result<()> {
        let failed = |why: String| {
            let (ns, name) = (meta::namespace(obj), meta::name(obj));
            ApiError::precondition_failed(
                &def.group_resource(),
                name,
                &storage_key(def, ns, name),
                why,
            )
        };
        if let Some(uid) = &self.uid
            && uid != meta::uid(obj)
        {
            return Err(failed(format!(
                "UID in precondition: {uid}, UID in object meta: {}",
                meta::uid(obj)
            )));
        }
        let stored_rv = meta::meta_str(obj, "resourceVersion");
        if let Some(rv) = &self.resource_version
            && rv != stored_rv
        {
            return Err(failed(format!(
                "ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {stored_rv}"
            )));
        }
        Ok(())
    }
}

/// The etcd key kube-apiserver would store an object under, as its errors show it:
/// `/registry/<resource>/...` for built-in kinds, `/registry/<group>/<resource>/...`
/// for custom resources.
fn storage_key(def: &ResourceDef, ns: &str, name: &str) -> String {
    let mut key = String::from("/registry/");
    if def.is_custom() {
        key.push_str(&def.group);
        key.push('/');
    }
    key.push_str(&def.plural);
    for part in [ns, name] {
        if !part.is_empty() {
            key.push('/');
            key.push_str(part);
        }
    }
    key
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `propagationPolicy` (default Background).
    pub propagation: Option<Propagation>,
    /// `preconditions`.
    pub preconditions: Preconditions,
}

impl DeleteOptions {
    /// Parse a `DeleteOptions` body (JSON), merged over query-parameter options.
    pub fn merge_body(mut self, body: &Value) -> Result<Self> {
        if let Some(p) = body.get("propagationPolicy").and_then(Value::as_str) {
            self.propagation = Some(Propagation::parse(p)?);
        } else if let Some(orphan) = body.get("orphanDependents").and_then(Value::as_bool) {
            self.propagation = Some(if orphan {
                Propagation::Orphan
            } else {
                Propagation::Background
            });
        }
        if let Some(pre) = body.get("preconditions") {
            if let Some(uid) = pre.get("uid").and_then(Value::as_str) {
                self.preconditions.uid = Some(uid.to_string());
            }
            if let Some(rv) = pre.get("resourceVersion").and_then(Value::as_str) {
                self.preconditions.resource_version = Some(rv.to_string());
            }
        }
        if let Some(dry) = body.get("dryRun").and_then(Value::as_array) {
            self.dry_run |= dry.iter().any(|d| d == "All");
        }
        Ok(self)
    }
}

/// The result of a delete.
#[derive(Debug, Clone)]
pub struct Deleted {
    /// The object's last state (or its state while finalizers hold it).
    pub object: Value,
    /// True when the object is gone; false when it waits for finalizers.
    pub gone: bool,
}

impl Cluster {
    /// Delete one object.
    pub fn delete(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted> {
        let gr = def.group_resource();
        let ns = if def.namespaced { ns } else { "" };
        let out = self.store.transact(|txn| {
            let old = txn
                .get(&gr, ns, name)
                .ok_or_else(|| ApiError::not_found(&gr, name))?;
            opts.preconditions.check(def, &old)?;
            let mut obj = (*old).clone();
            let mut finalizers = meta::finalizers(&obj);
            let extra = match opts.propagation {
                Some(Propagation::Orphan) => Some("orphan"),
                Some(Propagation::Foreground) => Some("foregroundDeletion"),
                _ => None,
            };
            if let Some(f) = extra
                && !finalizers.iter().any(|x| x == f)
            {
                finalizers.push(f.to_string());
            }
            meta::set_finalizers(&mut obj, &finalizers);
            if meta::is_deleting(&old) {
                // Already terminating: only a new propagation finalizer changes anything.
                if finalizers == meta::finalizers(&old) || opts.dry_run {
                    return Ok(Deleted {
                        object: Cluster::to_version(def, &old),
                        gone: false,
                    });
                }
                let stored = txn.put(&gr, obj);
                return Ok(Deleted {
                    object: Cluster::to_version(def, &stored),
                    gone: false,
                });
            }
            if blocks_deletion(def, &obj) {
                let m = meta::metadata_mut(&mut obj);
                m.insert("deletionTimestamp".into(), meta::now_rfc3339().into());
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
                if def.group.is_empty() && def.plural == "namespaces" {
                    obj["status"] = json!({"phase": "Terminating"});
                }
                if opts.dry_run {
                    return Ok(Deleted {
                        object: Cluster::to_version(def, &obj),
                        gone: false,
                    });
                }
                let stored = txn.put(&gr, obj);
                return Ok(Deleted {
                    object: Cluster::to_version(def, &stored),
                    gone: false,
                });
            }
            if opts.dry_run {
                return Ok(Deleted {
                    object: Cluster::to_version(def, &obj),
                    gone: true,
                });
            }
            let last = txn.delete(&gr, obj);
            Ok(Deleted {
                object: Cluster::to_version(def, &last),
                gone: true,
            })
        })?;
        if out.gone
            && !opts.dry_run
            && def.group == "apiextensions.k8s.io"
            && def.plural == "customresourcedefinitions"
        {
            let group = out
                .object
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or("");
            let plural = out
                .object
                .pointer("/spec/names/plural")
                .and_then(Value::as_str)
                .unwrap_or("");
            self.registry
                .unserve_custom(&crate::registry::GroupResource::new(group, plural));
        }
        Ok(out)
    }

    /// Delete every object matching the list options.
    pub fn delete_collection(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<Vec<Deleted>> {
        let page = self.list(
            def,
            ns,
            &ListOptions {
                limit: None,
                continue_token: None,
                ..list.clone()
            },
        )?;
        let mut out = Vec::new();
        for obj in page.items {
            match self.delete(def, meta::namespace(&obj), meta::name(&obj), opts) {
                Ok(d) => out.push(d),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}
