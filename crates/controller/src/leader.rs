//! Leader election through a `coordination.k8s.io/v1` Lease, so two controller
//! replicas never sync at once and the standby takes over within the lease duration
//! when the leader dies.
//!
//! Every `renew` interval each replica reads the Lease: the holder renews it; a
//! replica that finds it free or expired (not renewed for `lease_duration`) takes it
//! over. Writes carry the resourceVersion read, so two replicas racing for an expired
//! lease cannot both win. A leader that cannot renew for a whole lease duration
//! steps down, and its syncs stop before their next wave.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::json;

/// Whether this replica leads.
#[derive(Clone, Default)]
pub struct LeaderFlag(Arc<AtomicBool>);

impl LeaderFlag {
    /// A flag that always says yes (single replica, no election).
    pub fn always() -> Self {
        LeaderFlag(Arc::new(AtomicBool::new(true)))
    }

    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn set(&self, v: bool) -> bool {
        self.0.swap(v, Ordering::SeqCst) != v
    }
}

/// Settings of the election.
#[derive(Debug, Clone)]
pub struct Election {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (pod name, host name).
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews (and standbys look).
    pub renew: Duration,
}

fn micro_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn expired(lease: &Lease, duration: Duration) -> bool {
    let spec = lease.spec.as_ref();
    let renewed = spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0);
    let secs = spec
        .and_then(|s| s.lease_duration_seconds)
        .map(|s| Duration::from_secs(s.max(1) as u64))
        .unwrap_or(duration);
    match renewed {
        None => true,
        Some(t) => jiff::Timestamp::now().duration_since(t).unsigned_abs() > secs,
    }
}

/// Run the election forever, updating `flag` (and telling `on_change`).
pub async fn run(
    client: kube::Client,
    election: Election,
    flag: LeaderFlag,
    on_change: impl Fn(bool) + Send,
) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &election.namespace);
    let _ = crate::ensure_namespace(&client, &election.namespace).await;
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        let leading = match try_acquire(&api, &election).await {
            Ok(held) => {
                if held {
                    last_renewed = tokio::time::Instant::now();
                }
                held
            }
            Err(e) => {
                tracing::warn!(error = %e, "leader election");
                // keep leading only while the lease we hold cannot have expired
                // (and step down a third of it early, as client-go's renew deadline does,
                // so the standby never takes over while this replica still syncs)
                flag.is_leader() && last_renewed.elapsed() < election.lease_duration * 2 / 3
            }
        };
        if flag.set(leading) {
            on_change(leading);
        }
        tokio::time::sleep(election.renew).await;
    }
}

async fn try_acquire(api: &Api<Lease>, e: &Election) -> Result<bool, kube::Error> {
    let duration_s = e.lease_duration.as_secs().max(1) as i64;
    match api.get_opt(&e.name).await? {
        None => {
            let lease: Lease = serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": e.name, "namespace": e.namespace},
                "spec": {"holderIdentity": e.identity, "leaseDurationSeconds": duration_s,
                         "acquireTime": micro_now(), "renewTime": micro_now(), "leaseTransitions": 0},
            }))
            .expect("valid lease");
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(err) => Err(err),
            }
        }
        Some(mut lease) => {
            let holder = lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default();
            let ours = holder == e.identity;
            if !ours && !holder.is_empty() && !expired(&lease, e.lease_duration) {
                return Ok(false);
            }
            let spec = lease.spec.get_or_insert_with(Default::default);
            let now =
                k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now());
            if !ours {
                spec.holder_identity = Some(e.identity.clone());
                spec.acquire_time = Some(now.clone());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.lease_duration_seconds = Some(duration_s as i32);
            spec.renew_time = Some(now);
            match api.replace(&e.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                // someone else renewed or took it first
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(err) => Err(err),
            }
        }
    }
}

/// Give the Lease up if this replica holds it (a controller that stops in order), so
/// the standby takes over at its next look instead of after the lease duration: the
/// holder is cleared, as client-go's `ReleaseOnCancel` does. Returns whether it was
/// held.
pub async fn release(client: &kube::Client, e: &Election) -> Result<bool, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &e.namespace);
    let Some(mut lease) = api.get_opt(&e.name).await? else {
        return Ok(false);
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(e.identity.as_str()) {
        return Ok(false);
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    match api.replace(&e.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        // renewed or taken meanwhile: not ours to clear
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}
