//! Lease-based leader election (coordination.k8s.io/v1, the contract's ID
//! `agenttier-controller-leader`): every replica serves the API, one runs the cluster-wide
//! reconcilers. The holder renews the Lease every `renew_every`; another replica takes it over
//! once `renewTime + leaseDurationSeconds` has passed; a holder that cannot renew for a whole
//! lease duration steps down by itself, so two replicas never both believe they lead for longer
//! than the clock skew. A replica that shuts down releases the Lease, so the next one takes
//! over at once instead of after the lease expires.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// The Lease name of the controller (contract §8.4).
pub const LEASE_NAME: &str = "agenttier-controller-leader";

/// The Lease annotation where the holder publishes the URL its API is reached at, so followers
/// can forward requests that need the actors to it.
pub const LEADER_URL_ANNOTATION: &str = "agenttier.io/leader-url";

/// How the election runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    /// The namespace of the Lease (the install namespace).
    pub namespace: String,
    /// The Lease's name.
    pub lease_name: String,
    /// This replica's identity (the Pod name).
    pub identity: String,
    /// How long a Lease is valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews and a follower retries.
    pub renew_every: Duration,
    /// The URL this replica's API is reached at by the other replicas (published in the Lease
    /// while it leads).
    pub advertise_url: Option<String>,
}

impl LeaderElectionConfig {
    /// The defaults of client-go's leader election, scaled down: 15 s lease, renewed every 5 s.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            lease_name: LEASE_NAME.to_string(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            advertise_url: None,
        }
    }
}

/// What to do with the Lease as it is now.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Nobody holds it (or it expired, or was released): write it with us as holder.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds a valid Lease.
    Follow(String),
}

/// Decides from the Lease as read (pure, so the rules are unit-tested).
pub fn decide(lease: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == identity {
        return Decision::Renew;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match renewed {
        Some(at) if at.checked_add(duration).is_ok_and(|expiry| expiry > now) => {
            Decision::Follow(holder)
        }
        _ => Decision::Acquire,
    }
}

/// Who leads, as this replica last saw the Lease.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderView {
    /// How many rounds have completed (0: not decided yet).
    pub rounds: u64,
    /// Whether this replica leads.
    pub leading: bool,
    /// The leader's published URL (this replica's own while it leads); `None` while no leader
    /// is known or it published none.
    pub leader_url: Option<String>,
}

/// Runs leader election until dropped; `is_leader()` says whether this replica leads now.
pub struct LeaderElector {
    state: watch::Receiver<bool>,
    view: watch::Receiver<LeaderView>,
    task: tokio::task::JoinHandle<()>,
    release: Option<tokio::sync::oneshot::Sender<()>>,
}

impl LeaderElector {
    /// Starts electing.
    pub fn start(client: Client, config: LeaderElectionConfig) -> Self {
        let (tx, rx) = watch::channel(false);
        let (view_tx, view_rx) = watch::channel(LeaderView::default());
        let (release_tx, release_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(run(client, config, tx, view_tx, release_rx));
        Self {
            state: rx,
            view: view_rx,
            task,
            release: Some(release_tx),
        }
    }

    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        *self.state.borrow()
    }

    /// A receiver that changes whenever leadership does.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.state.clone()
    }

    /// A receiver of who leads (and where), updated every round.
    pub fn view(&self) -> watch::Receiver<LeaderView> {
        self.view.clone()
    }

    /// Gives the Lease up (if held) and stops electing.
    pub async fn shutdown(mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for LeaderElector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    client: Client,
    config: LeaderElectionConfig,
    leading: watch::Sender<bool>,
    view: watch::Sender<LeaderView>,
    mut release: tokio::sync::oneshot::Receiver<()>,
) {
    let leases: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut last_renewal: Option<tokio::time::Instant> = None;
    let mut rounds = 0u64;
    loop {
        let other_url = match try_once(&leases, &config).await {
            Ok(Round::Leading) => {
                last_renewal = Some(tokio::time::Instant::now());
                None
            }
            Ok(Round::Following(url)) => {
                last_renewal = None;
                url
            }
            Err(error) => {
                tracing::warn!(%error, "leader election: could not read or write the Lease");
                None
            }
        };
        let lead = last_renewal.is_some_and(|t| t.elapsed() < config.lease_duration);
        if *leading.borrow() != lead {
            tracing::info!(identity = %config.identity, leader = lead, "leadership changed");
            let _ = leading.send(lead);
        }
        rounds += 1;
        let leader_url = if lead {
            config.advertise_url.clone()
        } else {
            other_url
        };
        let _ = view.send(LeaderView {
            rounds,
            leading: lead,
            leader_url,
        });
        tokio::select! {
            () = tokio::time::sleep(config.renew_every) => {}
            _ = &mut release => {
                if lead {
                    release_lease(&leases, &config).await;
                }
                let _ = leading.send(false);
                view.send_modify(|v| {
                    v.leading = false;
                    v.leader_url = None;
                });
                return;
            }
        }
    }
}

/// What a round found.
enum Round {
    /// This replica holds the Lease.
    Leading,
    /// Another replica does (or won a race): the URL it published, if any.
    Following(Option<String>),
}

/// The URL a Lease's holder published.
fn published_url(lease: &Lease) -> Option<String> {
    lease
        .metadata
        .annotations
        .as_ref()?
        .get(LEADER_URL_ANNOTATION)
        .filter(|url| !url.is_empty())
        .cloned()
}

/// One round: whether this replica holds the Lease afterwards.
async fn try_once(
    leases: &Api<Lease>,
    config: &LeaderElectionConfig,
) -> Result<Round, kube::Error> {
    let now = Timestamp::now();
    let current = leases.get_opt(&config.lease_name).await?;
    let spec = current.as_ref().and_then(|l| l.spec.as_ref());
    let decision = decide(spec, &config.identity, now);
    let mut next = spec.cloned().unwrap_or_default();
    match decision {
        Decision::Follow(_) => {
            return Ok(Round::Following(current.as_ref().and_then(published_url)));
        }
        Decision::Renew => {}
        Decision::Acquire => {
            next.holder_identity = Some(config.identity.clone());
            next.acquire_time = Some(MicroTime(now));
            next.lease_transitions =
                Some(next.lease_transitions.unwrap_or(0) + i32::from(current.is_some()));
        }
    }
    next.renew_time = Some(MicroTime(now));
    next.lease_duration_seconds = Some(config.lease_duration.as_secs() as i32);
    let annotate = |metadata: &mut ObjectMeta| {
        let annotations = metadata.annotations.get_or_insert_with(Default::default);
        match &config.advertise_url {
            Some(url) => annotations.insert(LEADER_URL_ANNOTATION.to_string(), url.clone()),
            None => annotations.remove(LEADER_URL_ANNOTATION),
        };
    };
    let outcome = match current {
        Some(mut lease) => {
            lease.spec = Some(next);
            annotate(&mut lease.metadata);
            leases
                .replace(&config.lease_name, &PostParams::default(), &lease)
                .await
        }
        None => {
            let mut lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.lease_name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(next),
            };
            annotate(&mut lease.metadata);
            leases.create(&PostParams::default(), &lease).await
        }
    };
    match outcome {
        Ok(_) => Ok(Round::Leading),
        // Someone else wrote first (a conflict, or a create that lost the race).
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Round::Following(None)),
        Err(e) => Err(e),
    }
}

/// Clears the holder so a follower takes over on its next round.
async fn release_lease(leases: &Api<Lease>, config: &LeaderElectionConfig) {
    if let Ok(Some(mut lease)) = leases.get_opt(&config.lease_name).await
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(config.identity.as_str())
    {
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        if let Some(annotations) = lease.metadata.annotations.as_mut() {
            annotations.remove(LEADER_URL_ANNOTATION);
        }
        let _ = leases
            .replace(&config.lease_name, &PostParams::default(), &lease)
            .await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed_secs_ago: i64) -> LeaseSpec {
        let at = Timestamp::now() - SignedDuration::from_secs(renewed_secs_ago);
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at)),
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_or_released_lease_is_acquired() {
        let now = Timestamp::now();
        assert_eq!(decide(None, "a", now), Decision::Acquire);
        let released = LeaseSpec::default();
        assert_eq!(decide(Some(&released), "a", now), Decision::Acquire);
    }

    #[test]
    fn the_holder_renews_and_others_follow_until_it_expires() {
        let now = Timestamp::now();
        assert_eq!(decide(Some(&spec("a", 3)), "a", now), Decision::Renew);
        assert_eq!(
            decide(Some(&spec("a", 3)), "b", now),
            Decision::Follow("a".into())
        );
        assert_eq!(decide(Some(&spec("a", 20)), "b", now), Decision::Acquire);
    }
}
