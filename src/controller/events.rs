//! Kubernetes Events about registrations (events.k8s.io/v1).
//!
//! kube's `Recorder` keeps every Event of the last minutes in memory, to fold repeats into a
//! series, and sweeps that memory on each publish: at 10,000 registrations that was the largest
//! part of the controller's heap (~47 MiB) and made each publish cost the whole fleet. The
//! controller publishes only transitions (a new ID, Ready, unhealthy, invalid...), which are not
//! repeats of each other, so each is created as its own Event and nothing is remembered.

use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::{Api, Client, ResourceExt};

use crate::crd::MCPRegistration;

pub struct Events {
    client: Client,
    reporter: Reporter,
}

impl Events {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self { client, reporter }
    }

    /// Publishes `event` about `reg`; a failure is logged, never fatal to the reconcile.
    pub async fn publish(&self, reg: &MCPRegistration, event: &Event) {
        let record = self.record(reg, event, Timestamp::now());
        let namespace = record.metadata.namespace.clone().unwrap_or_default();
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(e) = api.create(&PostParams::default(), &record).await {
            tracing::warn!(error = %e, reason = %event.reason, registration = %reg.name_any(), "could not publish event");
        }
    }

    fn record(&self, reg: &MCPRegistration, event: &Event, now: Timestamp) -> K8sEvent {
        let regarding = reg.event_reference();
        K8sEvent {
            metadata: ObjectMeta {
                // As kubectl and client-go name them: the object, then a unique suffix.
                name: Some(format!("{}.{:x}", reg.name_any(), now.as_nanosecond())),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding),
            related: event.secondary.clone(),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            ..K8sEvent::default()
        }
    }
}
