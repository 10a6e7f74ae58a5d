//! create, update, patch and server-side apply, all ending in one pipeline
//! ([`Cluster::finish`]): identity and server-owned metadata, kind strategies,
//! defaulting, decoding and pruning, field ownership, validation, generation,
//! no-op detection, deletion completion, then the store.

use std::sync::Arc;

use rand::Rng;
use serde_json::{Value, json};

use super::{Cluster, Preconditions};
use crate::crd;
use crate::error::{ApiError, Cause, Result};
use crate::managed::{self, Scope, Writer};
use crate::meta;
use crate::patch::{Patch, PatchType};
use crate::registry::{GroupResource, ResourceDef};
use crate::schema::Schema;
use crate::store::Txn;
use crate::validation::{self, FieldValidation};

/// Options of a write request.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: run every step but do not store.
    pub dry_run: bool,
    /// The field manager recorded in managedFields.
    pub field_manager: String,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// `force` (apply only): take ownership of conflicting fields.
    pub force: bool,
}

impl WriteOptions {
    /// Options for an internal controller writing as `manager`.
    pub fn internal(manager: &str) -> Self {
        WriteOptions {
            field_manager: manager.to_string(),
            ..Default::default()
        }
    }
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    /// The object as stored (or as it would be, for dry runs), at the request's version.
    pub object: Value,
    /// Whether the write created the object.
    pub created: bool,
    /// Warnings for the `Warning` response header (e.g. unknown fields dropped).
    pub warnings: Vec<String>,
}

/// The schema merges of `def`'s objects use.
pub(crate) fn schema_of(def: &ResourceDef) -> Schema<'_> {
    if def.is_custom() {
        Schema::Custom(def.custom_schema())
    } else {
        Schema::Builtin {
            group: &def.group,
            kind: &def.kind,
        }
    }
}

fn scope_of(def: &ResourceDef, status: bool) -> Scope {
    if status {
        Scope::Status
    } else {
        Scope::Main {
            status_subresource: def.status_subresource,
        }
    }
}

/// Check `apiVersion`, `kind`, `namespace` and `name` of a request body against the URL.
fn check_identity(def: &ResourceDef, body: &mut Value, ns: &str, name: Option<&str>) -> Result<()> {
    if !body.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body of the request must be a {} object",
            def.kind
        )));
    }
    let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        return Err(ApiError::bad_request(
            "Object 'Kind' is missing in the request body",
        ));
    }
    if api_version.is_empty() {
        return Err(ApiError::bad_request(
            "Object 'apiVersion' is missing in the request body",
        ));
    }
    if api_version != def.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            def.api_version()
        )));
    }
    if kind != def.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({}) of {}",
            def.kind,
            def.group_resource()
        )));
    }
    let meta = meta::metadata_mut(body);
    if def.namespaced {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), ns.into());
            }
        }
    } else {
        meta.remove("namespace");
    }
    if let Some(url_name) = name {
        match meta.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != url_name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({url_name})"
                )));
            }
            _ => {
                meta.insert("name".into(), url_name.into());
            }
        }
    }
    Ok(())
}

/// A patch or apply may not change `metadata.uid` (an empty one keeps the stored uid).
fn check_uid_kept(def: &ResourceDef, old: &Value, new: &Value) -> Result<()> {
    let uid = meta::uid(new);
    if uid.is_empty() || uid == meta::uid(old) {
        return Ok(());
    }
    Err(ApiError::invalid(
        &def.group,
        &def.kind,
        meta::name(old),
        vec![Cause::immutable("metadata.uid", &json!(uid))],
    ))
}

/// Objects may not be created in a missing or terminating namespace.
fn ensure_namespace(txn: &Txn<'_>, gr: &GroupResource, ns: &str, name: &str) -> Result<()> {
    let nsgr = GroupResource::new("", "namespaces");
    match txn.get(&nsgr, "", ns) {
        None => Err(ApiError::not_found(&nsgr, ns)),
        Some(n) if meta::is_deleting(&n) => Err(ApiError::forbidden(
            gr,
            name,
            format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Whether finalizers (or a Namespace's spec finalizers) still hold an object.
pub(crate) fn blocks_deletion(def: &ResourceDef, obj: &Value) -> bool {
    !meta::finalizers(obj).is_empty()
        || (def.group.is_empty()
            && def.plural == "namespaces"
            && obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty()))
}

const GENERATE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generated_name(prefix: &str) -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| GENERATE_ALPHABET[rng.random_range(0..GENERATE_ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

fn is_crd(def: &ResourceDef) -> bool {
    def.group == "apiextensions.k8s.io" && def.plural == "customresourcedefinitions"
}

fn is_namespace(def: &ResourceDef) -> bool {
    def.group.is_empty() && def.plural == "namespaces"
}

impl Cluster {
    /// Create an object (POST).
    pub fn create(
        &self,
        def: &ResourceDef,
        ns: &str,
        mut body: Value,
        opts: &WriteOptions,
    ) -> Result<WriteOutcome> {
        check_identity(def, &mut body, ns, None)?;
        let gr = def.group_resource();
        let out = self.store.transact(|txn| {
            self.reject_if_crd_terminating(txn, def)?;
            let mut name = meta::name(&body).to_string();
            if name.is_empty() {
                let prefix = meta::meta_str(&body, "generateName").to_string();
                if !prefix.is_empty() {
                    name = loop {
                        let candidate = generated_name(&prefix);
                        if txn
                            .get(&gr, if def.namespaced { ns } else { "" }, &candidate)
                            .is_none()
                        {
                            break candidate;
                        }
                    };
                    meta::metadata_mut(&mut body).insert("name".into(), name.clone().into());
                }
            }
            if name.is_empty() {
                return Err(ApiError::invalid(
                    &def.group,
                    &def.kind,
                    "",
                    vec![Cause::new(
                        "FieldValueRequired",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    )],
                ));
            }
            if def.namespaced {
                ensure_namespace(txn, &gr, ns, &name)?;
            }
            if txn
                .get(&gr, if def.namespaced { ns } else { "" }, &name)
                .is_some()
            {
                return Err(ApiError::already_exists(&gr, &name));
            }
            if !meta::meta_str(&body, "resourceVersion").is_empty() {
                return Err(ApiError::bad_request(
                    "resourceVersion should not be set on objects to be created",
                ));
            }
            self.finish(
                txn,
                def,
                None,
                body,
                Scope::Main {
                    status_subresource: def.status_subresource,
                },
                false,
                opts,
            )
        })?;
        self.after_write(def, &out, opts);
        Ok(out)
    }

    /// Replace an object (PUT), with optimistic concurrency on `metadata.resourceVersion`.
    pub fn update(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        mut body: Value,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<WriteOutcome> {
        check_identity(def, &mut body, ns, Some(name))?;
        let gr = def.group_resource();
        let ns = if def.namespaced { ns } else { "" };
        let out = self.store.transact(|txn| {
            let old = txn
                .get(&gr, ns, name)
                .ok_or_else(|| ApiError::not_found(&gr, name))?;
            // a uid in the body is a precondition, as in kube-apiserver
            Preconditions::uid(meta::uid(&body)).check(def, &old)?;
            let wanted = meta::meta_str(&body, "resourceVersion");
            if !wanted.is_empty() && wanted != meta::meta_str(&old, "resourceVersion") {
                return Err(ApiError::stale(&gr, name));
            }
            self.finish(
                txn,
                def,
                Some(&old),
                body,
                scope_of(def, status),
                false,
                opts,
            )
        })?;
        self.after_write(def, &out, opts);
        Ok(out)
    }

    /// Patch an object with a JSON, merge or strategic merge patch.
    pub fn patch(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        patch: Patch<'_>,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<WriteOutcome> {
        if patch.kind == PatchType::Strategic && def.is_custom() {
            return Err(ApiError::unsupported_media_type(
                "application/strategic-merge-patch+json",
                &[
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml",
                ],
            ));
        }
        let gr = def.group_resource();
        let ns = if def.namespaced { ns } else { "" };
        let out = self.store.transact(|txn| {
            let old = txn
                .get(&gr, ns, name)
                .ok_or_else(|| ApiError::not_found(&gr, name))?;
            let current = Cluster::to_version(def, &old);
            let patched = patch
                .apply_to(&current, &schema_of(def))
                .map_err(|e| ApiError {
                    code: 422,
                    reason: "Invalid",
                    message: format!(
                        "the server rejected our request due to an error in our request: {e}"
                    ),
                    details: None,
                    retry_after: None,
                })?;
            let mut patched = patched;
            if !patched.is_object() {
                return Err(ApiError::bad_request(
                    "the patched object is not a JSON object",
                ));
            }
            let wanted = meta::meta_str(&patched, "resourceVersion");
            if !wanted.is_empty() && wanted != meta::meta_str(&old, "resourceVersion") {
                return Err(ApiError::stale(&gr, name));
            }
            check_identity(def, &mut patched, ns, Some(name))?;
            check_uid_kept(def, &old, &patched)?;
            self.finish(
                txn,
                def,
                Some(&old),
                patched,
                scope_of(def, status),
                false,
                opts,
            )
        })?;
        self.after_write(def, &out, opts);
        Ok(out)
    }

    /// Server-side apply: merge the configuration, creating the object if needed.
    pub fn apply(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        mut config: Value,
        status: bool,
        opts: &WriteOptions,
    ) -> Result<WriteOutcome> {
        if opts.field_manager.is_empty() {
            return Err(ApiError::bad_request(
                "PATCH requests with apply content type must specify fieldManager",
            ));
        }
        check_identity(def, &mut config, ns, Some(name))?;
        if meta::metadata(&config)
            .and_then(|m| m.get("managedFields"))
            .is_some_and(|m| !m.is_null())
        {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        let gr = def.group_resource();
        let ns = if def.namespaced { ns } else { "" };
        let out = self.store.transact(|txn| {
            let old = txn.get(&gr, ns, name);
            match &old {
                None if status => return Err(ApiError::not_found(&gr, name)),
                None => {
                    self.reject_if_crd_terminating(txn, def)?;
                    if def.namespaced {
                        ensure_namespace(txn, &gr, ns, name)?;
                    }
                }
                Some(o) => {
                    check_uid_kept(def, o, &config)?;
                    let wanted = meta::meta_str(&config, "resourceVersion");
                    if !wanted.is_empty() && wanted != meta::meta_str(o, "resourceVersion") {
                        return Err(ApiError::stale(&gr, name));
                    }
                }
            }
            let current = old.as_ref().map(|o| Cluster::to_version(def, o));
            let api_version = def.api_version();
            let writer = Writer {
                manager: &opts.field_manager,
                api_version: &api_version,
                scope: scope_of(def, status),
                schema: schema_of(def),
            };
            let now = meta::now_rfc3339();
            let mut merged = managed::apply(
                current.as_ref(),
                &config,
                &writer,
                opts.force,
                (&gr, name),
                &now,
            )?;
            let m = meta::metadata_mut(&mut merged);
            m.insert("name".into(), name.into());
            if def.namespaced {
                m.insert("namespace".into(), ns.into());
            }
            self.finish(
                txn,
                def,
                old.as_deref(),
                merged,
                scope_of(def, status),
                true,
                opts,
            )
        })?;
        self.after_write(def, &out, opts);
        Ok(out)
    }

    /// Read-modify-write for internal controllers: `f` gets the stored object and
    /// returns the new one (or `None` to change nothing). Runs atomically.
    pub fn update_with(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        status: bool,
        opts: &WriteOptions,
        f: impl FnOnce(&Value) -> Option<Value>,
    ) -> Result<Option<WriteOutcome>> {
        let gr = def.group_resource();
        let ns = if def.namespaced { ns } else { "" };
        let out = self.store.transact(|txn| {
            let old = txn
                .get(&gr, ns, name)
                .ok_or_else(|| ApiError::not_found(&gr, name))?;
            let current = Cluster::to_version(def, &old);
            match f(&current) {
                None => Ok(None),
                Some(new) => self
                    .finish(
                        txn,
                        def,
                        Some(&old),
                        new,
                        scope_of(def, status),
                        false,
                        opts,
                    )
                    .map(Some),
            }
        })?;
        if let Some(o) = &out {
            self.after_write(def, o, opts);
        }
        Ok(out)
    }

    /// Reads through the write transaction: the store lock is already held.
    fn reject_if_crd_terminating(&self, txn: &Txn<'_>, def: &ResourceDef) -> Result<()> {
        if let crate::registry::Origin::Custom(c) = &def.origin {
            let crds = GroupResource::new("apiextensions.k8s.io", "customresourcedefinitions");
            if txn
                .get(&crds, "", &c.crd_name)
                .is_some_and(|crd| meta::is_deleting(&crd))
            {
                return Err(ApiError::method_not_allowed(format!(
                    "create not allowed while custom resource definition is terminating: {}",
                    c.crd_name
                )));
            }
        }
        Ok(())
    }

    /// After a committed write: a CRD's resources are served at once, and stop being
    /// served when the write completed the CRD's deletion.
    fn after_write(&self, def: &ResourceDef, out: &WriteOutcome, opts: &WriteOptions) {
        if !is_crd(def) || opts.dry_run {
            return;
        }
        let name = meta::name(&out.object);
        if self.store.get(&def.group_resource(), "", name).is_none() {
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
                .unserve_custom(&GroupResource::new(group, plural));
        } else if !meta::is_deleting(&out.object) {
            self.registry.serve_custom(crd::resource_defs(&out.object));
        }
    }

    /// The pipeline every write ends in.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish(
        &self,
        txn: &mut Txn<'_>,
        def: &ResourceDef,
        old: Option<&Value>,
        candidate: Value,
        scope: Scope,
        applied: bool,
        opts: &WriteOptions,
    ) -> Result<WriteOutcome> {
        let gr = def.group_resource();
        let now = meta::now_rfc3339();
        let mut obj = candidate;
        let name = meta::name(&obj).to_string();
        let storage_api_version = if def.group.is_empty() {
            def.storage_version().to_string()
        } else {
            format!("{}/{}", def.group, def.storage_version())
        };
        obj["apiVersion"] = Value::String(storage_api_version);
        obj["kind"] = Value::String(def.kind.clone());

        self.server_metadata(def, old, &mut obj, scope, &now);
        let mut warnings = Vec::new();
        self.default_and_decode(txn, def, &mut obj, opts, &mut warnings)?;
        if !applied {
            let api_version = def.api_version();
            let writer = Writer {
                manager: &opts.field_manager,
                api_version: &api_version,
                scope,
                schema: schema_of(def),
            };
            let old_view = old.map(|o| Cluster::to_version(def, o));
            let mut view = Cluster::to_version(def, &obj);
            managed::track_update(old_view.as_ref(), &mut view, &writer, &now);
            if let Some(mf) = view.pointer("/metadata/managedFields") {
                meta::metadata_mut(&mut obj).insert("managedFields".into(), mf.clone());
            } else {
                meta::metadata_mut(&mut obj).remove("managedFields");
            }
        }

        let mut causes = validation::validate_metadata(def, &obj);
        if def.is_custom() {
            if let Some(schema) = def.custom_schema() {
                causes.extend(crd::validate_object(schema, &obj));
            }
        } else {
            causes.extend(validation::validate_builtin(def, &obj, old));
        }
        if is_crd(def) {
            causes.extend(crd::validate(&obj, old));
        }
        if let Some(old) = old.filter(|o| meta::is_deleting(o)) {
            let before = meta::finalizers(old);
            if meta::finalizers(&obj).iter().any(|f| !before.contains(f)) {
                causes.push(Cause::forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(&def.group, &def.kind, &name, causes));
        }

        if def.generation {
            let generation = match old {
                None => 1,
                Some(o) => {
                    let g = meta::generation(o).max(1);
                    if meta::spec_part(o) != meta::spec_part(&obj) {
                        g + 1
                    } else {
                        g
                    }
                }
            };
            meta::metadata_mut(&mut obj).insert("generation".into(), json!(generation));
        }
        if is_crd(def) && !meta::is_deleting(&obj) {
            obj["status"] = crd::established_status(&obj);
        }

        if let Some(old) = old {
            if *old == obj {
                return Ok(WriteOutcome {
                    object: Cluster::to_version(def, old),
                    created: false,
                    warnings,
                });
            }
            if meta::is_deleting(&obj) && !blocks_deletion(def, &obj) {
                let last = if opts.dry_run {
                    Arc::new(obj)
                } else {
                    txn.delete(&gr, obj)
                };
                return Ok(WriteOutcome {
                    object: Cluster::to_version(def, &last),
                    created: false,
                    warnings,
                });
            }
        }
        let stored = if opts.dry_run {
            Arc::new(obj)
        } else {
            txn.put(&gr, obj)
        };
        Ok(WriteOutcome {
            object: Cluster::to_version(def, &stored),
            created: old.is_none(),
            warnings,
        })
    }

    /// uid, timestamps, generation and status handling by scope.
    fn server_metadata(
        &self,
        def: &ResourceDef,
        old: Option<&Value>,
        obj: &mut Value,
        scope: Scope,
        now: &str,
    ) {
        match old {
            None => {
                let m = meta::metadata_mut(obj);
                m.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
                m.insert("creationTimestamp".into(), now.into());
                for f in [
                    "resourceVersion",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                    "selfLink",
                ] {
                    m.remove(f);
                }
                if def.status_subresource
                    && let Some(o) = obj.as_object_mut()
                {
                    o.remove("status");
                }
                if is_namespace(def) {
                    obj["status"] = json!({"phase": "Active"});
                }
                if is_crd(def) {
                    let mut fins = meta::finalizers(obj);
                    if !fins.iter().any(|f| f == crd::CLEANUP_FINALIZER) {
                        fins.push(crd::CLEANUP_FINALIZER.to_string());
                    }
                    meta::set_finalizers(obj, &fins);
                }
            }
            Some(old) => {
                if scope == Scope::Status {
                    let status = obj.get("status").cloned();
                    let mut base = old.clone();
                    match status {
                        Some(s) => base["status"] = s,
                        None => {
                            if let Some(b) = base.as_object_mut() {
                                b.remove("status");
                            }
                        }
                    }
                    base["apiVersion"] = obj["apiVersion"].clone();
                    if let Some(mf) = obj.pointer("/metadata/managedFields").cloned() {
                        meta::metadata_mut(&mut base).insert("managedFields".into(), mf);
                    }
                    *obj = base;
                } else if def.status_subresource || is_namespace(def) {
                    match old.get("status") {
                        Some(s) => obj["status"] = s.clone(),
                        None => {
                            if let Some(o) = obj.as_object_mut() {
                                o.remove("status");
                            }
                        }
                    }
                }
                let old_meta = meta::metadata(old).cloned().unwrap_or_default();
                let m = meta::metadata_mut(obj);
                for f in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "resourceVersion",
                    "generation",
                ] {
                    match old_meta.get(f) {
                        Some(v) => {
                            m.insert(f.into(), v.clone());
                        }
                        None => {
                            m.remove(f);
                        }
                    }
                }
                m.remove("selfLink");
            }
        }
    }

    /// Defaults, then decoding (types, unknown fields) by the kind's schema.
    fn default_and_decode(
        &self,
        txn: &Txn<'_>,
        def: &ResourceDef,
        obj: &mut Value,
        opts: &WriteOptions,
        warnings: &mut Vec<String>,
    ) -> Result<()> {
        let mut unknown: Vec<String> = Vec::new();
        if def.is_custom() {
            if let Some(schema) = def.custom_schema() {
                crd::drop_nulls(schema, obj);
                unknown = crd::prune(schema, obj);
                crd::apply_defaults(schema, obj);
            }
        } else {
            let mut alloc_ip = || self.allocate_cluster_ip(txn);
            let mut alloc_port = || self.allocate_node_port();
            crate::defaults::apply_builtin(
                &def.group,
                &def.kind,
                obj,
                &mut alloc_ip,
                &mut alloc_port,
            );
            managed::fill_key_defaults(obj, &schema_of(def));
            let view = Cluster::to_version(def, obj);
            match validation::decode_builtin(&def.group, &def.kind, &view) {
                None => {}
                Some(Ok(decoded)) => {
                    validation::prune_paths(obj, &decoded.unknown);
                    unknown = decoded
                        .unknown
                        .iter()
                        .map(|p| validation::render_path(p))
                        .collect();
                }
                Some(Err((path, message))) => {
                    if let Some(field) = message
                        .strip_prefix("missing field `")
                        .and_then(|m| m.split('`').next())
                    {
                        let full = if path.is_empty() {
                            field.to_string()
                        } else {
                            format!("{path}.{field}")
                        };
                        return Err(ApiError::invalid(
                            &def.group,
                            &def.kind,
                            meta::name(obj),
                            vec![Cause::required(full)],
                        ));
                    }
                    let at = if path.is_empty() {
                        String::new()
                    } else {
                        format!("{path}: ")
                    };
                    return Err(ApiError::bad_request(format!(
                        "{} in version {:?} cannot be handled as a {}: {at}{message}",
                        def.kind, def.version, def.kind
                    )));
                }
            }
        }
        if unknown.is_empty() {
            return Ok(());
        }
        match opts.field_validation {
            FieldValidation::Strict => {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|p| format!("unknown field {p:?}"))
                    .collect();
                Err(ApiError::bad_request(format!(
                    "{} in version {:?} cannot be handled as a {}: strict decoding error: {}",
                    def.kind,
                    def.version,
                    def.kind,
                    list.join(", ")
                )))
            }
            FieldValidation::Warn => {
                warnings.extend(unknown.iter().map(|p| format!("unknown field {p:?}")));
                Ok(())
            }
            FieldValidation::Ignore => Ok(()),
        }
    }
}
