//! kubectl's imperative commands (`create namespace|configmap|secret|deployment|job|
//! service|token`, `run`, `expose`, `auth can-i`) against the embedded API server.
//! kubectl sends their bodies as protobuf; each test checks the stored object field by
//! field, and one checks that what protobuf creates is what the same object sent as
//! JSON creates.

use base64::Engine;
use serde_json::Value;

use crate::util::{TestServer, stderr, stdout};

/// `kubectl get KIND NAME -n demo -o json`.
fn get(s: &TestServer, kind: &str, name: &str) -> Value {
    let out = s.kubectl_ok(&["get", kind, name, "-n", "demo", "-o", "json"]);
    serde_json::from_str(&out).expect("kubectl get -o json prints JSON")
}

/// A server with the namespace `demo`, made by `kubectl create namespace`.
fn server_with_demo() -> TestServer {
    let s = TestServer::start();
    let out = s.kubectl_ok(&["create", "namespace", "demo"]);
    assert_eq!(out.trim(), "namespace/demo created");
    s
}

#[test]
fn create_namespace_makes_an_active_namespace() {
    let s = server_with_demo();
    let ns: Value =
        serde_json::from_str(&s.kubectl_ok(&["get", "namespace", "demo", "-o", "json"])).unwrap();
    assert_eq!(ns["kind"], "Namespace");
    assert_eq!(ns["metadata"]["name"], "demo");
    assert_eq!(ns["status"]["phase"], "Active");
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "demo",
        "{ns}"
    );
    assert!(ns["metadata"]["creationTimestamp"].is_string(), "{ns}");
    // a second one is refused as kube-apiserver refuses it
    let out = s.kubectl(&["create", "namespace", "demo"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("AlreadyExists"), "{}", stderr(&out));
}

#[test]
fn create_configmap_from_literals_stores_each_literal() {
    let s = server_with_demo();
    s.kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "demo",
        "--from-literal=mode=fast",
        "--from-literal=retries=3",
        "--from-literal=empty=",
    ]);
    let cm = get(&s, "configmap", "settings");
    assert_eq!(cm["metadata"]["name"], "settings");
    assert_eq!(cm["metadata"]["namespace"], "demo");
    assert_eq!(cm["data"]["mode"], "fast");
    assert_eq!(cm["data"]["retries"], "3");
    // an empty value is kept: a map's values are never left out
    assert_eq!(cm["data"]["empty"], "", "{cm}");
    assert_eq!(cm["data"].as_object().map(|m| m.len()), Some(3));
}

#[test]
fn create_secret_generic_stores_the_literal_base64_encoded() {
    let s = server_with_demo();
    let secret_value = format!("pw-{}", std::process::id());
    let literal = format!("--from-literal=password={secret_value}");
    s.kubectl_ok(&[
        "create", "secret", "generic", "creds", "-n", "demo", &literal,
    ]);
    let secret = get(&s, "secret", "creds");
    assert_eq!(secret["type"], "Opaque");
    let stored = secret["data"]["password"].as_str().unwrap_or_default();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(stored)
        .unwrap_or_default();
    // compared, never printed
    assert!(
        decoded == secret_value.as_bytes(),
        "the stored password does not decode to the literal"
    );
    assert_eq!(secret["data"].as_object().map(|m| m.len()), Some(1));
}

#[test]
fn create_deployment_with_image_and_replicas() {
    let s = server_with_demo();
    s.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "demo",
        "--image=nginx:1.27",
        "--replicas=3",
        "--port=8080",
    ]);
    let d = get(&s, "deployment", "web");
    assert_eq!(d["apiVersion"], "apps/v1");
    assert_eq!(d["metadata"]["labels"]["app"], "web");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    let template = &d["spec"]["template"];
    assert_eq!(template["metadata"]["labels"]["app"], "web");
    let container = &template["spec"]["containers"][0];
    assert_eq!(container["name"], "nginx");
    assert_eq!(container["image"], "nginx:1.27");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    // and the defaults a JSON body gets
    assert_eq!(template["spec"]["restartPolicy"], "Always", "{d}");
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    // replicas: 0 is kept, not taken for unset
    s.kubectl_ok(&[
        "create",
        "deployment",
        "idle",
        "-n",
        "demo",
        "--image=nginx:1.27",
        "--replicas=0",
    ]);
    assert_eq!(get(&s, "deployment", "idle")["spec"]["replicas"], 0);
}

#[test]
fn create_job_with_image_and_command() {
    let s = server_with_demo();
    s.kubectl_ok(&[
        "create",
        "job",
        "migrate",
        "-n",
        "demo",
        "--image=busybox:1.36",
        "--",
        "sh",
        "-c",
        "echo done",
    ]);
    let job = get(&s, "job", "migrate");
    assert_eq!(job["apiVersion"], "batch/v1");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["containers"][0]["name"], "migrate");
    assert_eq!(pod["containers"][0]["image"], "busybox:1.36");
    assert_eq!(
        pod["containers"][0]["command"],
        serde_json::json!(["sh", "-c", "echo done"])
    );
}

#[test]
fn create_service_clusterip_with_tcp_ports() {
    let s = server_with_demo();
    s.kubectl_ok(&[
        "create",
        "service",
        "clusterip",
        "api",
        "-n",
        "demo",
        "--tcp=80:8080",
        "--tcp=443:https",
    ]);
    let svc = get(&s, "service", "api");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["metadata"]["labels"]["app"], "api");
    assert_eq!(svc["spec"]["selector"]["app"], "api");
    let ports = &svc["spec"]["ports"];
    assert_eq!(ports[0]["name"], "80-8080");
    assert_eq!(ports[0]["port"], 80);
    assert_eq!(ports[0]["targetPort"], 8080);
    assert_eq!(ports[0]["protocol"], "TCP");
    // a named target port stays a string (IntOrString)
    assert_eq!(ports[1]["port"], 443);
    assert_eq!(ports[1]["targetPort"], "https");
    assert!(svc["spec"]["clusterIP"].is_string(), "{svc}");
}

#[test]
fn run_creates_a_pod_with_the_image_labels_and_args() {
    let s = server_with_demo();
    s.kubectl_ok(&[
        "run",
        "box",
        "-n",
        "demo",
        "--image=busybox:1.36",
        "--labels=tier=debug",
        "--port=9000",
        "--env=MODE=test",
        "--",
        "sleep",
        "3600",
    ]);
    let pod = get(&s, "pod", "box");
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["metadata"]["labels"]["tier"], "debug");
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["name"], "box");
    assert_eq!(c["image"], "busybox:1.36");
    assert_eq!(c["args"], serde_json::json!(["sleep", "3600"]));
    assert_eq!(c["ports"][0]["containerPort"], 9000);
    assert_eq!(c["env"][0]["name"], "MODE");
    assert_eq!(c["env"][0]["value"], "test");
}

#[test]
fn expose_deployment_creates_a_service_selecting_its_pods() {
    let s = server_with_demo();
    s.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "demo",
        "--image=nginx:1.27",
    ]);
    let out = s.kubectl_ok(&[
        "expose",
        "deployment",
        "web",
        "-n",
        "demo",
        "--port=80",
        "--target-port=8080",
        "--name=web-svc",
    ]);
    assert_eq!(out.trim(), "service/web-svc exposed");
    let svc = get(&s, "service", "web-svc");
    assert_eq!(svc["spec"]["selector"], serde_json::json!({"app": "web"}));
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
    assert_eq!(svc["metadata"]["labels"]["app"], "web");
}

#[test]
fn create_token_and_auth_can_i_are_answered() {
    let s = server_with_demo();
    s.kubectl_ok(&["create", "serviceaccount", "deployer", "-n", "demo"]);
    let token = s.kubectl_ok(&["create", "token", "deployer", "-n", "demo"]);
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "a JWT");
    // it authenticates (and, with no RBAC here, is not authorized)
    let out = s.kubectl(&["get", "configmaps", "-n", "demo", "--token", token]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Forbidden"), "{}", stderr(&out));
    assert_eq!(
        s.kubectl_ok(&["auth", "can-i", "create", "deployments", "-n", "demo"])
            .trim(),
        "yes"
    );
    let out = s.kubectl(&[
        "auth",
        "can-i",
        "get",
        "configmaps",
        "-n",
        "demo",
        "--token",
        token,
    ]);
    let answer = stdout(&out);
    assert!(
        answer.starts_with("no") && answer.contains("system:serviceaccount:demo:deployer"),
        "{answer}"
    );
    let rules = s.kubectl_ok(&["auth", "can-i", "--list", "-n", "demo"]);
    assert!(rules.lines().any(|l| l.starts_with("*.*")), "{rules}");
}

/// Object fields that are zero, `false` or null, removed everywhere: protobuf cannot
/// tell a Go pointer set to zero from a non-pointer field left zero, so both are
/// stored (`hostPort: 0`, `stdin: false`) where a JSON client leaves the second out.
fn without_zero_values(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !(x.is_null() || x.as_i64() == Some(0) || x.as_bool() == Some(false)));
            m.values_mut().for_each(without_zero_values);
        }
        Value::Array(a) => a.iter_mut().for_each(without_zero_values),
        _ => {}
    }
}

/// What is stored, less what differs between any two objects (identity, times,
/// managers, allocated addresses) and zero values, with the namespace cleared.
fn comparable(mut v: Value) -> Value {
    if let Some(m) = v["metadata"].as_object_mut() {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "namespace",
            "generation",
        ] {
            m.remove(k);
        }
    }
    if let Some(spec) = v["spec"].as_object_mut() {
        // allocated per Service
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
        for port in spec
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if port["nodePort"].as_u64().is_some_and(|p| p >= 30000) {
                port["nodePort"] = Value::from("allocated");
            }
        }
    }
    v.as_object_mut().map(|m| m.remove("status"));
    without_zero_values(&mut v);
    v
}

#[test]
fn protobuf_bodies_store_what_the_same_objects_sent_as_json_store() {
    let s = server_with_demo();
    s.kubectl_ok(&["create", "namespace", "json"]);
    let commands: &[(&str, &[&str])] = &[
        (
            "deployment/web",
            &[
                "create",
                "deployment",
                "web",
                "--image=nginx:1.27",
                "--replicas=2",
                "--port=80",
            ],
        ),
        (
            "job/once",
            &[
                "create",
                "job",
                "once",
                "--image=busybox:1.36",
                "--",
                "true",
            ],
        ),
        (
            "service/api",
            &["create", "service", "clusterip", "api", "--tcp=80:8080"],
        ),
        (
            "service/node",
            &["create", "service", "nodeport", "node", "--tcp=80:8080"],
        ),
        (
            "pod/box",
            &[
                "run",
                "box",
                "--image=busybox:1.36",
                "--port=9000",
                "--",
                "sleep",
                "1",
            ],
        ),
        (
            "configmap/cfg",
            &["create", "configmap", "cfg", "--from-literal=a=1"],
        ),
        (
            "secret/tls-ish",
            &[
                "create",
                "secret",
                "generic",
                "tls-ish",
                "--from-literal=k=v",
            ],
        ),
        ("serviceaccount/sa", &["create", "serviceaccount", "sa"]),
        (
            "cronjob/tick",
            &[
                "create",
                "cronjob",
                "tick",
                "--image=busybox:1.36",
                "--schedule=*/5 * * * *",
            ],
        ),
        (
            "role/reader",
            &[
                "create",
                "role",
                "reader",
                "--verb=get,list",
                "--resource=pods",
            ],
        ),
        (
            "rolebinding/readers",
            &[
                "create",
                "rolebinding",
                "readers",
                "--role=reader",
                "--user=alice",
            ],
        ),
        (
            "poddisruptionbudget/pdb",
            &[
                "create",
                "poddisruptionbudget",
                "pdb",
                "--selector=app=web",
                "--min-available=1",
            ],
        ),
        (
            "ingress/site",
            &["create", "ingress", "site", "--rule=example.com/=api:80"],
        ),
        (
            "resourcequota/q",
            &["create", "quota", "q", "--hard=pods=10,requests.cpu=500m"],
        ),
    ];
    for (object, args) in commands {
        // flags before `--`, the container's command after it
        let with = |flags: &[&'static str]| -> Vec<&str> {
            let flags_end = args.iter().position(|a| *a == "--").unwrap_or(args.len());
            let mut v = args[..flags_end].to_vec();
            v.extend(flags);
            v.extend(&args[flags_end..]);
            v
        };
        s.kubectl_ok(&with(&["-n", "demo"]));
        // the same object, as kubectl writes it in JSON, created from that JSON
        let dry = with(&["-n", "json", "--dry-run=client", "-o", "json"]);
        let json = s.kubectl_ok(&dry);
        let out = s.kubectl_stdin(&["create", "-f", "-"], Some(&json));
        assert!(out.status.success(), "{object} from JSON: {}", stderr(&out));
        let of = |ns: &str| {
            let out = s.kubectl_ok(&["get", object, "-n", ns, "-o", "json"]);
            comparable(serde_json::from_str(&out).unwrap())
        };
        let (from_pb, from_json) = (of("demo"), of("json"));
        assert_eq!(
            from_pb, from_json,
            "{object}: created from protobuf (left) and from JSON (right) differ"
        );
    }
}
