//! Defaults kube-apiserver fills into built-in objects, so what this server stores looks
//! like what a real cluster stores (and diffs against it behave the same).
//!
//! Only defaults that clients commonly observe are set: Service types, IPs and port
//! protocols, workload replica counts and strategies, container pull policies, and the
//! Namespace finalizer, phase and name label.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::meta;

/// Fill defaults into a built-in object.
///
/// `cluster_ip` allocates a ClusterIP for a Service that needs one.
pub fn apply_builtin(
    group: &str,
    kind: &str,
    obj: &mut Value,
    cluster_ip: &mut dyn FnMut() -> String,
    node_port: &mut dyn FnMut() -> i64,
) {
    match (group, kind) {
        ("", "Namespace") => {
            let name = meta::name(obj).to_string();
            let labels = meta::metadata_mut(obj)
                .entry("labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), Value::String(name));
            }
            let spec = obj_entry(obj, "spec");
            spec.entry("finalizers")
                .or_insert_with(|| json!(["kubernetes"]));
        }
        ("", "Service") => default_service(obj, cluster_ip, node_port),
        ("", "Secret") => {
            if let Some(m) = obj.as_object_mut() {
                m.entry("type").or_insert_with(|| "Opaque".into());
                // stringData is write-only: it is folded into data and never stored.
                if let Some(Value::Object(plain)) = m.remove("stringData") {
                    let data = m.entry("data").or_insert_with(|| Value::Object(Map::new()));
                    if let Some(d) = data.as_object_mut() {
                        for (k, v) in plain {
                            let text = v
                                .as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string());
                            d.insert(k, Value::String(STANDARD.encode(text)));
                        }
                    }
                }
            }
        }
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec, true);
            }
        }
        ("", "PersistentVolumeClaim") => {
            let spec = obj_entry(obj, "spec");
            spec.entry("volumeMode")
                .or_insert_with(|| "Filesystem".into());
        }
        ("apps", "Deployment") => {
            let spec = obj_entry(obj, "spec");
            spec.entry("replicas").or_insert(json!(1));
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("progressDeadlineSeconds").or_insert(json!(600));
            spec.entry("strategy").or_insert_with(
                || json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
            );
            default_template(obj, true);
        }
        ("apps", "ReplicaSet") => {
            obj_entry(obj, "spec").entry("replicas").or_insert(json!(1));
            default_template(obj, true);
        }
        ("apps", "StatefulSet") => {
            let spec = obj_entry(obj, "spec");
            spec.entry("replicas").or_insert(json!(1));
            spec.entry("podManagementPolicy")
                .or_insert_with(|| "OrderedReady".into());
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("updateStrategy").or_insert_with(
                || json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            default_template(obj, true);
        }
        ("apps", "DaemonSet") => {
            let spec = obj_entry(obj, "spec");
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("updateStrategy").or_insert_with(
                || json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            );
            default_template(obj, true);
        }
        ("batch", "Job") => {
            let spec = obj_entry(obj, "spec");
            spec.entry("backoffLimit").or_insert(json!(6));
            spec.entry("completionMode")
                .or_insert_with(|| "NonIndexed".into());
            spec.entry("suspend").or_insert(json!(false));
            let parallel = spec.get("parallelism").cloned().unwrap_or(json!(1));
            spec.entry("parallelism").or_insert(parallel);
            spec.entry("completions").or_insert(json!(1));
            default_template(obj, false);
        }
        ("batch", "CronJob") => {
            let spec = obj_entry(obj, "spec");
            spec.entry("concurrencyPolicy")
                .or_insert_with(|| "Allow".into());
            spec.entry("suspend").or_insert(json!(false));
            spec.entry("successfulJobsHistoryLimit").or_insert(json!(3));
            spec.entry("failedJobsHistoryLimit").or_insert(json!(1));
            if let Some(tpl) = obj.pointer_mut("/spec/jobTemplate/spec/template/spec") {
                default_pod_spec(tpl, false);
            }
        }
        _ => {}
    }
}

fn obj_entry<'a>(obj: &'a mut Value, field: &str) -> &'a mut Map<String, Value> {
    let map = obj.as_object_mut().expect("objects are JSON objects");
    let v = map
        .entry(field)
        .or_insert_with(|| Value::Object(Map::new()));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("object")
}

fn default_template(obj: &mut Value, restart_always: bool) {
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        default_pod_spec(spec, restart_always);
    }
}

fn default_pod_spec(spec: &mut Value, restart_always: bool) {
    let Some(s) = spec.as_object_mut() else {
        return;
    };
    if restart_always {
        s.entry("restartPolicy").or_insert_with(|| "Always".into());
    }
    s.entry("dnsPolicy")
        .or_insert_with(|| "ClusterFirst".into());
    s.entry("schedulerName")
        .or_insert_with(|| "default-scheduler".into());
    s.entry("securityContext").or_insert_with(|| json!({}));
    s.entry("terminationGracePeriodSeconds")
        .or_insert(json!(30));
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = s.get_mut(list) {
            for c in cs.iter_mut() {
                default_container(c);
            }
        }
    }
}

fn default_container(c: &mut Value) {
    let Some(m) = c.as_object_mut() else {
        return;
    };
    let image = m
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let latest = {
        let last = image.rsplit('/').next().unwrap_or("");
        !last.contains(':') && !image.contains('@') || last.ends_with(":latest")
    };
    m.entry("imagePullPolicy")
        .or_insert_with(|| if latest { "Always" } else { "IfNotPresent" }.into());
    m.entry("terminationMessagePath")
        .or_insert_with(|| "/dev/termination-log".into());
    m.entry("terminationMessagePolicy")
        .or_insert_with(|| "File".into());
    m.entry("resources").or_insert_with(|| json!({}));
    if let Some(Value::Array(ports)) = m.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            p.entry("protocol").or_insert_with(|| "TCP".into());
        }
    }
}

fn default_service(
    obj: &mut Value,
    cluster_ip: &mut dyn FnMut() -> String,
    node_port: &mut dyn FnMut() -> i64,
) {
    let spec = obj_entry(obj, "spec");
    let ty = spec
        .entry("type")
        .or_insert_with(|| "ClusterIP".into())
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    if ty == "ExternalName" {
        return;
    }
    spec.entry("sessionAffinity")
        .or_insert_with(|| "None".into());
    spec.entry("internalTrafficPolicy")
        .or_insert_with(|| "Cluster".into());
    spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
    spec.entry("ipFamilyPolicy")
        .or_insert_with(|| "SingleStack".into());
    let needs_ip = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if needs_ip {
        let ip = cluster_ip();
        spec.insert("clusterIP".into(), ip.clone().into());
        spec.insert("clusterIPs".into(), json!([ip]));
    } else if !spec.contains_key("clusterIPs") {
        let ip = spec["clusterIP"].clone();
        spec.insert("clusterIPs".into(), json!([ip]));
    }
    let wants_node_ports = matches!(ty.as_str(), "NodePort" | "LoadBalancer");
    if wants_node_ports {
        spec.entry("externalTrafficPolicy")
            .or_insert_with(|| "Cluster".into());
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            p.entry("protocol").or_insert_with(|| "TCP".into());
            // 0 (or "") is unset, as in kube-apiserver: a protobuf body always carries
            // these non-pointer fields, zero when the client left them out
            let unset = |v: Option<&Value>| {
                v.is_none_or(|v| v.is_null() || *v == json!(0) || *v == json!(""))
            };
            if let Some(port) = p.get("port").cloned()
                && unset(p.get("targetPort"))
            {
                p.insert("targetPort".into(), port);
            }
            if wants_node_ports && unset(p.get("nodePort")) {
                p.insert("nodePort".into(), json!(node_port()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip() -> String {
        "10.96.0.10".into()
    }

    #[test]
    fn service_gets_cluster_ip_and_port_defaults() {
        let mut svc = json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}});
        apply_builtin("", "Service", &mut svc, &mut ip, &mut || 30001);
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        assert_eq!(svc["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
    }

    #[test]
    fn a_zero_node_port_or_target_port_is_unset() {
        let mut svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort",
            "ports": [{"port": 80, "targetPort": 0, "nodePort": 0}, {"port": 81, "targetPort": ""}]}});
        apply_builtin("", "Service", &mut svc, &mut ip, &mut || 30001);
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30001);
        assert_eq!(svc["spec"]["ports"][1]["targetPort"], 81);
    }

    #[test]
    fn secret_string_data_is_folded_into_data() {
        let mut s = json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}, "data": {"a": "Yg=="}});
        apply_builtin("", "Secret", &mut s, &mut ip, &mut || 0);
        assert!(s.get("stringData").is_none());
        assert_eq!(s["data"], json!({"a": "Yg==", "password": "aHVudGVyMg=="}));
        assert_eq!(s["type"], "Opaque");
    }

    #[test]
    fn deployment_defaults_replicas_and_pull_policy() {
        let mut d = json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "nginx"}, {"name": "b", "image": "nginx:1.27"}]}}}});
        apply_builtin("apps", "Deployment", &mut d, &mut ip, &mut || 0);
        assert_eq!(d["spec"]["replicas"], 1);
        let cs = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0]["imagePullPolicy"], "Always");
        assert_eq!(cs[1]["imagePullPolicy"], "IfNotPresent");
    }
}
