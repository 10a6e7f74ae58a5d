//! `meta.k8s.io/v1 Table` responses: the columns `kubectl get` prints, per kind, and
//! a CRD's `additionalPrinterColumns` (JSONPath, including `[?(@.type=="Ready")]`
//! filters; `date` columns rendered as ages).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::meta;
use crate::registry::{Origin, ResourceDef};

/// What each row's `object` holds (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// A PartialObjectMetadata (the default).
    #[default]
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// Parse the `includeObject` query parameter.
    pub fn parse(s: &str) -> Self {
        match s {
            "None" => IncludeObject::None,
            "Object" => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

type Cell = fn(&Value) -> Value;

struct Column {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    priority: i64,
    cell: Cell,
}

const fn col(name: &'static str, ty: &'static str, cell: Cell) -> Column {
    Column {
        name,
        ty,
        format: "",
        priority: 0,
        cell,
    }
}

fn name_cell(o: &Value) -> Value {
    json!(meta::name(o))
}

fn age_cell(o: &Value) -> Value {
    json!(meta::age(o))
}

fn int_at(o: &Value, ptr: &str) -> i64 {
    o.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn count_keys(o: &Value) -> Value {
    let n = ["data", "binaryData"]
        .iter()
        .filter_map(|f| o.get(*f).and_then(Value::as_object))
        .map(Map::len)
        .sum::<usize>();
    json!(n)
}

fn builtin_columns(def: &ResourceDef) -> Vec<Column> {
    let name = Column {
        name: "Name",
        ty: "string",
        format: "name",
        priority: 0,
        cell: name_cell,
    };
    let age = col("Age", "string", age_cell);
    if def.kind == "Event" && matches!(def.group.as_str(), "" | "events.k8s.io") {
        return event_columns(name);
    }
    let mut cols = vec![name];
    match (def.group.as_str(), def.kind.as_str()) {
        ("", "Namespace") => cols.push(col("Status", "string", |o| {
            o.pointer("/status/phase").cloned().unwrap_or(json!(""))
        })),
        ("", "ConfigMap") => cols.push(col("Data", "integer", count_keys)),
        ("", "Secret") => {
            cols.push(col("Type", "string", |o| {
                o.get("type").cloned().unwrap_or(json!("Opaque"))
            }));
            cols.push(col("Data", "integer", count_keys));
        }
        ("", "Service") => {
            cols.push(col("Type", "string", |o| {
                o.pointer("/spec/type")
                    .cloned()
                    .unwrap_or(json!("ClusterIP"))
            }));
            cols.push(col("Cluster-IP", "string", |o| {
                o.pointer("/spec/clusterIP")
                    .cloned()
                    .unwrap_or(json!("<none>"))
            }));
            cols.push(col("External-IP", "string", |o| {
                let ips: Vec<String> = o
                    .pointer("/status/loadBalancer/ingress")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|i| i.get("ip").and_then(Value::as_str))
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                if ips.is_empty() {
                    let pending =
                        o.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer");
                    json!(if pending { "<pending>" } else { "<none>" })
                } else {
                    json!(ips.join(","))
                }
            }));
            cols.push(col("Port(s)", "string", |o| {
                let ports: Vec<String> = o
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|p| {
                                let port = p.get("port").map(|v| v.to_string()).unwrap_or_default();
                                let proto =
                                    p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                                match p.get("nodePort") {
                                    Some(np) => format!("{port}:{np}/{proto}"),
                                    None => format!("{port}/{proto}"),
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                json!(if ports.is_empty() {
                    "<none>".to_string()
                } else {
                    ports.join(",")
                })
            }));
        }
        ("", "Pod") => {
            cols.push(col("Ready", "string", |o| {
                let statuses = o
                    .pointer("/status/containerStatuses")
                    .and_then(Value::as_array);
                let total = o
                    .pointer("/spec/containers")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                let ready = statuses.map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
                json!(format!("{ready}/{total}"))
            }));
            cols.push(col("Status", "string", |o| {
                let waiting = o
                    .pointer("/status/containerStatuses")
                    .and_then(Value::as_array)
                    .and_then(|s| {
                        s.iter()
                            .find_map(|c| c.pointer("/state/waiting/reason").cloned())
                    });
                if meta::is_deleting(o) {
                    return json!("Terminating");
                }
                waiting.unwrap_or_else(|| {
                    o.pointer("/status/phase")
                        .cloned()
                        .unwrap_or(json!("Pending"))
                })
            }));
            cols.push(col("Restarts", "integer", |o| {
                let n: i64 = o
                    .pointer("/status/containerStatuses")
                    .and_then(Value::as_array)
                    .map_or(0, |s| {
                        s.iter().filter_map(|c| c["restartCount"].as_i64()).sum()
                    });
                json!(n)
            }));
        }
        ("apps", "Deployment") => {
            cols.push(col("Ready", "string", |o| {
                json!(format!(
                    "{}/{}",
                    int_at(o, "/status/readyReplicas"),
                    int_at(o, "/spec/replicas")
                ))
            }));
            cols.push(col("Up-to-date", "integer", |o| {
                json!(int_at(o, "/status/updatedReplicas"))
            }));
            cols.push(col("Available", "integer", |o| {
                json!(int_at(o, "/status/availableReplicas"))
            }));
        }
        ("apps", "StatefulSet") => {
            cols.push(col("Ready", "string", |o| {
                json!(format!(
                    "{}/{}",
                    int_at(o, "/status/readyReplicas"),
                    int_at(o, "/spec/replicas")
                ))
            }));
        }
        ("apps", "ReplicaSet") => {
            cols.push(col("Desired", "integer", |o| {
                json!(int_at(o, "/spec/replicas"))
            }));
            cols.push(col("Current", "integer", |o| {
                json!(int_at(o, "/status/replicas"))
            }));
            cols.push(col("Ready", "integer", |o| {
                json!(int_at(o, "/status/readyReplicas"))
            }));
        }
        ("apps", "DaemonSet") => {
            cols.push(col("Desired", "integer", |o| {
                json!(int_at(o, "/status/desiredNumberScheduled"))
            }));
            cols.push(col("Current", "integer", |o| {
                json!(int_at(o, "/status/currentNumberScheduled"))
            }));
            cols.push(col("Ready", "integer", |o| {
                json!(int_at(o, "/status/numberReady"))
            }));
            cols.push(col("Available", "integer", |o| {
                json!(int_at(o, "/status/numberAvailable"))
            }));
        }
        ("batch", "Job") => {
            cols.push(col("Status", "string", |o| {
                let has = |t: &str| {
                    o.pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c["type"] == t && c["status"] == "True")
                        })
                };
                json!(if has("Complete") {
                    "Complete"
                } else if has("Failed") {
                    "Failed"
                } else if has("Suspended") {
                    "Suspended"
                } else {
                    "Running"
                })
            }));
            cols.push(col("Completions", "string", |o| {
                json!(format!(
                    "{}/{}",
                    int_at(o, "/status/succeeded"),
                    o.pointer("/spec/completions")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                ))
            }));
        }
        ("batch", "CronJob") => {
            cols.push(col("Schedule", "string", |o| {
                o.pointer("/spec/schedule").cloned().unwrap_or(json!(""))
            }));
            cols.push(col("Suspend", "boolean", |o| {
                o.pointer("/spec/suspend").cloned().unwrap_or(json!(false))
            }));
        }
        ("", "PersistentVolumeClaim") => {
            cols.push(col("Status", "string", |o| {
                o.pointer("/status/phase")
                    .cloned()
                    .unwrap_or(json!("Pending"))
            }));
            cols.push(col("Capacity", "string", |o| {
                o.pointer("/status/capacity/storage")
                    .cloned()
                    .unwrap_or(json!(""))
            }));
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            cols.push(Column {
                name: "Created At",
                ty: "date",
                format: "",
                priority: 0,
                cell: |o| json!(meta::meta_str(o, "creationTimestamp")),
            });
            return cols;
        }
        _ => {}
    }
    cols.push(age);
    cols
}

/// When an Event was last seen: `lastTimestamp`, the series' last observation,
/// `eventTime`, or its creation, as kube-apiserver's printer reads them.
fn event_last_seen(o: &Value) -> Value {
    let text = [
        "/lastTimestamp",
        "/series/lastObservedTime",
        "/deprecatedLastTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .filter_map(|p| o.pointer(p).and_then(Value::as_str))
    .find(|s| !s.is_empty());
    match text.and_then(meta::parse_time) {
        Some(ts) => json!(meta::human_duration(
            jiff::Timestamp::now().as_second() - ts.as_second()
        )),
        None => json!("<unknown>"),
    }
}

/// The columns `kubectl get events` prints (core/v1 and events.k8s.io/v1 share them).
fn event_columns(name: Column) -> Vec<Column> {
    let wide = |c: Column| Column { priority: 1, ..c };
    let object = |o: &Value| {
        let r = o
            .get("involvedObject")
            .or_else(|| o.get("regarding"))
            .cloned()
            .unwrap_or_default();
        let kind = r.get("kind").and_then(Value::as_str).unwrap_or("");
        let n = r.get("name").and_then(Value::as_str).unwrap_or("");
        json!(format!("{}/{n}", kind.to_lowercase()))
    };
    vec![
        col("Last Seen", "string", event_last_seen),
        col("Type", "string", |o| {
            o.get("type").cloned().unwrap_or(json!(""))
        }),
        col("Reason", "string", |o| {
            o.get("reason").cloned().unwrap_or(json!(""))
        }),
        col("Object", "string", object),
        col("Message", "string", |o| {
            o.get("message")
                .or_else(|| o.get("note"))
                .cloned()
                .unwrap_or(json!(""))
        }),
        wide(col("Count", "integer", |o| {
            o.get("count").cloned().unwrap_or(json!(1))
        })),
        wide(name),
    ]
}

/// Evaluate a printer-column JSONPath such as `.status.conditions[?(@.type=="Ready")].status`.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut cur = obj;
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let field = &r[..end];
            if !field.is_empty() {
                cur = cur.get(field)?;
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (key, want) = filter.split_once("==")?;
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                cur = cur.as_array()?.iter().find(|item| {
                    item.get(key.trim())
                        .is_some_and(|v| v.as_str().map_or_else(|| *v == want, |s| s == want))
                })?;
            } else {
                let idx: usize = inner.trim().parse().ok()?;
                cur = cur.get(idx)?;
            }
        } else {
            return None;
        }
    }
    Some(cur)
}

fn custom_cells(columns: &[Value], obj: &Value) -> Vec<Value> {
    columns
        .iter()
        .map(|c| {
            let path = c.get("jsonPath").and_then(Value::as_str).unwrap_or("");
            let v = json_path(obj, path).cloned();
            match (c.get("type").and_then(Value::as_str), v) {
                (_, None) | (_, Some(Value::Null)) => Value::Null,
                (Some("date"), Some(Value::String(s))) => match meta::parse_time(&s) {
                    Some(ts) => json!(meta::human_duration(
                        jiff::Timestamp::now().as_second() - ts.as_second()
                    )),
                    None => json!(s),
                },
                (_, Some(v)) => v,
            }
        })
        .collect()
}

/// Build a Table of `objects` as `def` prints them.
pub fn table(
    def: &ResourceDef,
    objects: &[Arc<Value>],
    include: IncludeObject,
    list_meta: Value,
    headers: bool,
) -> Value {
    let custom_columns = match &def.origin {
        Origin::Custom(c) if !c.printer_columns.is_empty() => Some(&c.printer_columns),
        _ => None,
    };
    let (definitions, rows): (Vec<Value>, Vec<Value>) = match custom_columns {
        Some(cols) => {
            let mut defs = vec![
                json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
            ];
            defs.extend(cols.iter().map(|c| {
                json!({
                    "name": c.get("name").cloned().unwrap_or(json!("")),
                    "type": c.get("type").cloned().unwrap_or(json!("string")),
                    "format": c.get("format").cloned().unwrap_or(json!("")),
                    "description": c.get("description").cloned().unwrap_or(json!("")),
                    "priority": c.get("priority").cloned().unwrap_or(json!(0)),
                })
            }));
            let rows = objects
                .iter()
                .map(|o| {
                    let mut cells = vec![json!(meta::name(o))];
                    cells.extend(custom_cells(cols, o));
                    row(cells, o, include)
                })
                .collect();
            (defs, rows)
        }
        None => {
            let cols = builtin_columns(def);
            let defs = cols
                .iter()
                .map(|c| json!({"name": c.name, "type": c.ty, "format": c.format, "description": "", "priority": c.priority}))
                .collect();
            let rows = objects
                .iter()
                .map(|o| {
                    let cells = cols.iter().map(|c| {
                        let v = (c.cell)(o);
                        if c.ty == "date" {
                            match v.as_str().and_then(meta::parse_time) {
                                Some(ts) => json!(meta::human_duration(
                                    jiff::Timestamp::now().as_second() - ts.as_second()
                                )),
                                None => v,
                            }
                        } else {
                            v
                        }
                    });
                    row(cells.collect(), o, include)
                })
                .collect();
            (defs, rows)
        }
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": if headers { Value::Array(definitions) } else { json!([]) },
        "rows": rows,
    })
}

fn row(cells: Vec<Value>, obj: &Value, include: IncludeObject) -> Value {
    let mut r = json!({"cells": cells});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => r["object"] = partial_metadata(obj),
        IncludeObject::Object => r["object"] = obj.clone(),
    }
    r
}

/// The `PartialObjectMetadata` of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_with_condition_filter() {
        let obj = json!({"status": {"sync": {"status": "Synced"}, "conditions": [
            {"type": "Synced", "status": "True"}, {"type": "Ready", "status": "False"}]}, "items": [1, 2]});
        assert_eq!(
            json_path(&obj, ".status.sync.status"),
            Some(&json!("Synced"))
        );
        assert_eq!(
            json_path(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(&json!("False"))
        );
        assert_eq!(json_path(&obj, "{.items[1]}"), Some(&json!(2)));
        assert_eq!(json_path(&obj, ".status.missing"), None);
    }
}
