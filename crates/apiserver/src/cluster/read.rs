//! get and list, with label/field selectors and `limit`/`continue` paging.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::Cluster;
use crate::error::{ApiError, Result};
use crate::meta;
use crate::registry::ResourceDef;
use crate::selector::{FieldSelector, LabelSelector};

/// Options of a list (and of a watch's filtering).
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `limit`: at most this many items per page.
    pub limit: Option<usize>,
    /// `continue`: the token of the previous page.
    pub continue_token: Option<String>,
}

impl ListOptions {
    /// Whether an object passes both selectors.
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

/// One page of a list.
#[derive(Debug)]
pub struct ListResult {
    /// The matching objects of this page, in (namespace, name) order.
    pub items: Vec<Arc<Value>>,
    /// The resourceVersion of the list.
    pub resource_version: u64,
    /// Token for the next page, if there is one.
    pub continue_token: Option<String>,
    /// How many matching items follow this page.
    pub remaining: Option<usize>,
}

fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{ns}/{name}\u{0}")});
    URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(u64, String, String)> {
    let bad = || ApiError::bad_request(format!("invalid continue token {token:?}"));
    let raw = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    let start = start.trim_end_matches('\u{0}');
    let (ns, name) = start.split_once('/').ok_or_else(bad)?;
    Ok((rv, ns.to_string(), name.to_string()))
}

impl Cluster {
    /// One object, at the version `def` serves.
    pub fn get(&self, def: &ResourceDef, ns: &str, name: &str) -> Result<Value> {
        let ns = if def.namespaced { ns } else { "" };
        self.store
            .get(&def.group_resource(), ns, name)
            .map(|o| Cluster::to_version(def, &o))
            .ok_or_else(|| ApiError::not_found(&def.group_resource(), name))
    }

    /// A page of objects matching the options, in one namespace or all (`None`).
    ///
    /// Pages after the first read the current state after the last key returned, and
    /// report the resourceVersion of the first page.
    pub fn list(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult> {
        let gr = def.group_resource();
        let ns = if def.namespaced { ns } else { None };
        let after = match &opts.continue_token {
            Some(t) => Some(decode_continue(t)?),
            None => None,
        };
        let limit = opts.limit.filter(|l| *l > 0);
        let mut items: Vec<Arc<Value>> = Vec::new();
        let mut remaining = 0usize;
        let mut take = |o: &Arc<Value>| {
            if !opts.matches(o) {
                return;
            }
            if limit.is_none_or(|l| items.len() < l) {
                items.push(o.clone());
            } else {
                remaining += 1;
            }
        };
        let current_rv = match opts.fields.required_name() {
            // a name selector needs no scan
            Some(name) if ns.is_some() => {
                let rv = self.store.current_rv();
                if let Some(o) = self.store.get(&gr, ns.unwrap_or_default(), name) {
                    let past = after.as_ref().is_none_or(|(_, ans, aname)| {
                        (meta::namespace(&o), meta::name(&o)) > (ans.as_str(), aname.as_str())
                    });
                    if past {
                        take(&o);
                    }
                }
                rv
            }
            _ => self.store.scan(
                &gr,
                ns,
                after.as_ref().map(|(_, n, m)| (n.as_str(), m.as_str())),
                take,
            ),
        };
        let list_rv = after.as_ref().map_or(current_rv, |(rv, _, _)| *rv);
        let continue_token = match (limit, items.last()) {
            (Some(_), Some(last)) if remaining > 0 => Some(encode_continue(
                list_rv,
                meta::namespace(last),
                meta::name(last),
            )),
            _ => None,
        };
        let items = if def.is_custom() && def.version != def.storage_version() {
            items
                .into_iter()
                .map(|o| Arc::new(Cluster::to_version(def, &o)))
                .collect()
        } else {
            items
        };
        Ok(ListResult {
            items,
            resource_version: list_rv,
            continue_token,
            remaining: (remaining > 0).then_some(remaining),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_token_round_trips() {
        let t = encode_continue(42, "default", "cm-0009");
        assert_eq!(
            decode_continue(&t).unwrap(),
            (42, "default".into(), "cm-0009".into())
        );
        assert_eq!(decode_continue("garbage!").unwrap_err().code, 400);
    }
}
