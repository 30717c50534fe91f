//! Leader election on a `coordination.k8s.io` Lease, so that of several controller replicas only
//! one reconciles and writes status. Standbys poll the Lease and take it over once its holder
//! stops renewing; a leader that cannot renew in time stops (its pod restarts as a standby)
//! rather than risk two writers. The decision is pure (`decide`); the I/O is in `Elector`.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::Api;

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    pub lease_name: String,
    /// This replica's identity (the pod name in a cluster).
    pub identity: String,
    /// How long a Lease stays valid without renewal; standbys take over after it.
    pub lease_duration: Duration,
}

impl LeaderElection {
    /// How often the leader renews and standbys retry: a third of the Lease's duration.
    pub fn retry_period(&self) -> Duration {
        self.lease_duration / 3
    }
}

/// What to do with the Lease as it is now.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Ours: renew it.
    Renew,
    /// Free or expired: take it.
    Acquire,
    /// Held by someone else until then.
    Wait { holder: String },
}

/// Decides from the Lease's spec, `now` and who we are. Pure.
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Verdict {
    let Some(spec) = spec else {
        return Verdict::Acquire;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == identity {
        return Verdict::Renew;
    }
    if holder.is_empty() {
        return Verdict::Acquire;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    match &spec.renew_time {
        Some(MicroTime(renewed)) if renewed.checked_add(duration).is_ok_and(|end| end > now) => {
            Verdict::Wait { holder }
        }
        _ => Verdict::Acquire,
    }
}

/// Tries to take or keep the Lease once. `Ok(true)` when this replica holds it afterwards.
/// Conflicting writers are resolved by resourceVersion: the loser gets 409 and reads `false`.
pub async fn try_lead(api: &Api<Lease>, election: &LeaderElection) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&election.lease_name).await?;
    let verdict = decide(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &election.identity,
        now,
    );
    let previous = current
        .as_ref()
        .and_then(|l| l.spec.clone())
        .unwrap_or_default();
    let spec = match &verdict {
        Verdict::Wait { .. } => return Ok(false),
        Verdict::Renew => LeaseSpec {
            renew_time: Some(MicroTime(now)),
            ..previous
        },
        Verdict::Acquire => LeaseSpec {
            holder_identity: Some(election.identity.clone()),
            lease_duration_seconds: Some(election.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(previous.lease_transitions.unwrap_or(0) + 1),
            ..previous
        },
    };
    let result = match current {
        Some(mut lease) => {
            lease.spec = Some(spec);
            api.replace(&election.lease_name, &PostParams::default(), &lease)
                .await
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(election.lease_name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await
        }
    };
    match result {
        Ok(_) => {
            if verdict == Verdict::Acquire {
                tracing::info!(identity = %election.identity, lease = %election.lease_name, "became the leader");
            }
            Ok(true)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Hands the Lease over at shutdown, so a standby need not wait for it to expire.
pub async fn release(api: &Api<Lease>, election: &LeaderElection) {
    let Ok(Some(mut lease)) = api.get_opt(&election.lease_name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(election.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    if let Err(e) = api
        .replace(&election.lease_name, &PostParams::default(), &lease)
        .await
    {
        tracing::warn!(error = %e, "could not release the leader Lease; a standby takes over when it expires");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed_secs_ago: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(
                Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1000 - renewed_secs_ago),
            )),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_lease_is_taken_when_free_or_expired_and_kept_by_its_holder() {
        let now = Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1000);
        assert_eq!(decide(None, "a", now), Verdict::Acquire);
        assert_eq!(decide(Some(&spec(None, 0)), "a", now), Verdict::Acquire);
        assert_eq!(
            decide(Some(&spec(Some("a"), 100)), "a", now),
            Verdict::Renew
        );
        assert_eq!(
            decide(Some(&spec(Some("b"), 5)), "a", now),
            Verdict::Wait { holder: "b".into() }
        );
        assert_eq!(
            decide(Some(&spec(Some("b"), 16)), "a", now),
            Verdict::Acquire
        );
    }
}
