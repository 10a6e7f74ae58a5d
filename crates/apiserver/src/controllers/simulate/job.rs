//! The Job controller: Pods (`NAME-xxxxx`, labelled `job-name` and `controller-uid`),
//! up to `parallelism` at a time, until `completions` of them succeed (`Complete`) or
//! more than `backoffLimit` fail (`Failed`, `BackoffLimitExceeded`); a Pod ends as its
//! command says (see [`super::program`]). A suspended Job has no running Pods. A
//! finished Job with `ttlSecondsAfterFinished` is deleted that long after, as the TTL
//! controller does; its finalizers, if any, hold it as on a real cluster.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::events::{self, Component};
use super::pods::{self, Extra, Name};
use super::{PODS, Sim, condition, controlled, counters, has_condition};
use crate::meta;

fn suspended(job: &Value) -> bool {
    job.pointer("/spec/suspend") == Some(&json!(true))
}

fn finished(job: &Value) -> bool {
    has_condition(job, "Complete", "True") || has_condition(job, "Failed", "True")
}

pub(super) fn reconcile(sim: &Arc<Sim>, job: &Value) {
    if meta::is_deleting(job) {
        return;
    }
    if finished(job) {
        expire(sim, job);
        return;
    }
    let all = controlled(sim, job, PODS);
    let mut active: Vec<Value> = all.iter().filter(|p| pods::is_active(p)).cloned().collect();
    let succeeded = all.iter().filter(|p| pods::phase(p) == "Succeeded").count() as i64;
    let failed = all.iter().filter(|p| pods::phase(p) == "Failed").count() as i64;
    let completions = job
        .pointer("/spec/completions")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let parallelism = job
        .pointer("/spec/parallelism")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let backoff = job
        .pointer("/spec/backoffLimit")
        .and_then(Value::as_i64)
        .unwrap_or(6);
    if suspended(job) {
        for pod in active.drain(..) {
            events::delete_pod(sim, Component::Job, job, &pod);
        }
        let status = json!({"conditions": [condition("Suspended", "True", "JobSuspended", "Job suspended", true)]});
        super::set_status(sim, job, status);
        return;
    }
    let now = meta::now_rfc3339();
    let start = job
        .pointer("/status/startTime")
        .cloned()
        .unwrap_or_else(|| json!(now));
    let mut status = json!({"startTime": start, "terminating": 0, "uncountedTerminatedPods": {}});
    if failed > backoff {
        for pod in active.drain(..) {
            events::delete_pod(sim, Component::Job, job, &pod);
        }
        let message = "Job has reached the specified backoff limit";
        status["conditions"] = json!([
            condition(
                "FailureTarget",
                "True",
                "BackoffLimitExceeded",
                message,
                true
            ),
            condition("Failed", "True", "BackoffLimitExceeded", message, true),
        ]);
        events::warning(sim, Component::Job, job, "BackoffLimitExceeded", message);
    } else if succeeded >= completions {
        let message = "Reached expected number of succeeded pods";
        status["completionTime"] = json!(now);
        status["conditions"] = json!([
            condition(
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                message,
                true
            ),
            condition("Complete", "True", "CompletionsReached", message, true),
        ]);
        events::normal(sim, Component::Job, job, "Completed", "Job completed");
    } else {
        let wanted = parallelism.min(completions - succeeded).max(0) as usize;
        for _ in active.len()..wanted {
            let made = pods::create(
                sim,
                Component::Job,
                job,
                job.pointer("/spec/template").unwrap_or(&Value::Null),
                Name::Generated(meta::name(job)),
                labels(job),
            );
            match made.and_then(|n| {
                sim.cluster
                    .store
                    .get(&super::gr(PODS), meta::namespace(job), &n)
            }) {
                Some(pod) => active.push((*pod).clone()),
                None => break,
            }
        }
    }
    let ready = active.iter().filter(|p| pods::is_ready(p)).count() as i64;
    status["ready"] = json!(ready);
    counters(
        &mut status,
        &[
            ("active", active.len() as i64),
            ("succeeded", succeeded),
            ("failed", failed),
        ],
    );
    super::set_status(sim, job, status);
}

/// The labels the Job controller gives its Pods.
fn labels(job: &Value) -> Extra<'static> {
    let (name, uid) = (meta::name(job).to_string(), meta::uid(job).to_string());
    Extra {
        labels: vec![
            ("batch.kubernetes.io/controller-uid", uid.clone()),
            ("batch.kubernetes.io/job-name", name.clone()),
            ("controller-uid", uid),
            ("job-name", name),
        ],
        ..Default::default()
    }
}

/// Delete a finished Job `ttlSecondsAfterFinished` after it finished.
fn expire(sim: &Arc<Sim>, job: &Value) {
    let Some(ttl) = job
        .pointer("/spec/ttlSecondsAfterFinished")
        .and_then(Value::as_u64)
    else {
        return;
    };
    let key = (
        super::gr(super::JOBS),
        meta::namespace(job).to_string(),
        meta::name(job).to_string(),
        format!("ttl-{}", meta::uid(job)),
    );
    if !sim.timers.lock().insert(key.clone()) {
        return;
    }
    let sim = sim.clone();
    let uid = meta::uid(job).to_string();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(ttl)).await;
        sim.timers.lock().remove(&key);
        let (gr, ns, name, _) = &key;
        if let Some(cur) = sim.cluster.store.get(gr, ns, name)
            && meta::uid(&cur) == uid
            && !meta::is_deleting(&cur)
        {
            super::delete(&sim, &cur);
        }
    });
}
