//! What a kubelet, a volume provisioner, a cloud load balancer and an ingress
//! controller would do, after a delay: each new Pod (keyed by uid), PVC, LoadBalancer
//! Service or Ingress gets its pending status at once and its final one when its
//! delay is over.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Kind, Sim, fails, pods};
use crate::meta;
use crate::registry::GroupResource;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Pending,
    Done,
}

/// Schedule the final status of `obj`, unless it has it (or is already scheduled).
pub(super) fn consider(sim: &Arc<Sim>, kind: Kind, gr: &GroupResource, obj: &Value) {
    if meta::is_deleting(obj) || is_settled(kind, obj) {
        return;
    }
    if kind != Kind::Pod && fails(obj) {
        // never ready: the pending status is all they get
        write(sim, kind, obj, Phase::Pending);
        return;
    }
    let key = (
        gr.clone(),
        meta::namespace(obj).to_string(),
        meta::name(obj).to_string(),
        meta::uid(obj).to_string(),
    );
    if !sim.timers.lock().insert(key.clone()) {
        return;
    }
    if kind == Kind::Pod && pods::is_new(obj) {
        write(sim, kind, obj, Phase::Pending);
    }
    let program = if kind == Kind::Pod {
        pods::program_of(obj)
    } else {
        None
    };
    let delay = super::delay_for(sim, obj, program);
    let sim = sim.clone();
    let gr = gr.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        sim.timers.lock().remove(&key);
        let (_, ns, name, uid) = &key;
        if let Some(cur) = sim.cluster.store.get(&gr, ns, name)
            && meta::uid(&cur) == uid
            && !meta::is_deleting(&cur)
        {
            write(&sim, kind, &cur, Phase::Done);
        }
    });
}

fn is_settled(kind: Kind, obj: &Value) -> bool {
    match kind {
        Kind::Pod => pods::is_settled(obj),
        Kind::Claim => obj.pointer("/status/phase").and_then(Value::as_str) == Some("Bound"),
        Kind::LoadBalancer | Kind::Ingress => obj.pointer("/status/loadBalancer/ingress").is_some(),
        _ => true,
    }
}

fn write(sim: &Sim, kind: Kind, obj: &Value, phase: Phase) {
    let done = phase == Phase::Done;
    let status = match kind {
        Kind::Pod => {
            let fail = super::pod_fails(sim, obj)
                || pods::program_of(obj).is_some_and(|p| p.exit_code != 0);
            pods::status(obj, done, fail)
        }
        Kind::Claim if done => json!({"phase": "Bound",
            "accessModes": obj.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
            "capacity": {"storage": obj.pointer("/spec/resources/requests/storage").cloned().unwrap_or(json!("1Gi"))}}),
        Kind::Claim => json!({"phase": "Pending"}),
        Kind::LoadBalancer if done => {
            json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.10", "ipMode": "VIP"}]}})
        }
        // what an ingress controller writes once it serves the Ingress
        Kind::Ingress if done => json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.11"}]}}),
        Kind::LoadBalancer | Kind::Ingress => json!({"loadBalancer": {}}),
        _ => return,
    };
    super::set_status(sim, obj, status);
}
