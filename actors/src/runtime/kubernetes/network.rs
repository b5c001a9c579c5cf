//! The NetworkPolicy of a sandbox (contract §8.7): all egress denied except DNS, with the spec's
//! opt-ins: `allowInternet` (all egress), egress rules (a CIDR with ports; a `serviceRef` opens
//! its port in any namespace) and peering with other sandboxes by label. Ingress is denied except
//! from peers and the spec's ingress rules. Enforcement is the CNI plugin's job; this object only
//! states the policy.

use std::collections::BTreeMap;

use agenttier_crds::{NetworkRule, NetworkSpec};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names;
use crate::store::kubernetes::SandboxRef;

fn port(protocol: &str, number: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.to_string()),
        port: Some(IntOrString::Int(number)),
        end_port: None,
    }
}

/// The peers and ports of one rule; `None` for a rule that names nothing to allow.
fn rule_parts(rule: &NetworkRule) -> Option<(Vec<NetworkPolicyPeer>, Vec<NetworkPolicyPort>)> {
    let mut ports: Vec<NetworkPolicyPort> = rule
        .ports
        .iter()
        .map(|p| port(p.protocol.as_deref().unwrap_or("TCP"), p.port))
        .collect();
    let peers = if let Some(cidr) = &rule.cidr {
        vec![NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: cidr.clone(),
                except: None,
            }),
            ..Default::default()
        }]
    } else if let Some(service) = &rule.service_ref {
        // A Service's pods are not known here; its port is opened towards every namespace,
        // as the contract's reference implementation does.
        if let Some(number) = service.port {
            ports.push(port("TCP", number));
        }
        vec![NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector::default()),
            ..Default::default()
        }]
    } else if !ports.is_empty() {
        Vec::new()
    } else {
        return None;
    };
    Some((peers, ports))
}

/// The NetworkPolicy of a sandbox.
pub fn network_policy(
    sandbox: &SandboxRef,
    runtime_id: &str,
    network: Option<&NetworkSpec>,
) -> NetworkPolicy {
    let network = network.cloned().unwrap_or_default();
    let mut egress = vec![NetworkPolicyEgressRule {
        to: None,
        ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
    }];
    let mut ingress = Vec::new();
    if network.allow_internet.unwrap_or(false) {
        egress.push(NetworkPolicyEgressRule::default());
    } else {
        for rule in &network.egress_rules {
            if let Some((peers, ports)) = rule_parts(rule) {
                egress.push(NetworkPolicyEgressRule {
                    to: (!peers.is_empty()).then_some(peers),
                    ports: (!ports.is_empty()).then_some(ports),
                });
            }
        }
    }
    for rule in &network.ingress_rules {
        if let Some((peers, ports)) = rule_parts(rule) {
            ingress.push(NetworkPolicyIngressRule {
                from: (!peers.is_empty()).then_some(peers),
                ports: (!ports.is_empty()).then_some(ports),
            });
        }
    }
    if network.allow_peer_sandboxes.unwrap_or(false) {
        let selector = network
            .peer_sandbox_selector
            .clone()
            .unwrap_or(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    names::MANAGED_LABEL.to_string(),
                    "true".to_string(),
                )])),
                match_expressions: None,
            });
        let peer = NetworkPolicyPeer {
            pod_selector: Some(selector),
            ..Default::default()
        };
        egress.push(NetworkPolicyEgressRule {
            to: Some(vec![peer.clone()]),
            ports: None,
        });
        ingress.push(NetworkPolicyIngressRule {
            from: Some(vec![peer]),
            ports: None,
        });
    }
    let labels = names::sandbox_labels(sandbox, runtime_id);
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(names::network_policy(&sandbox.name)),
            namespace: Some(sandbox.namespace.clone()),
            labels: Some(labels),
            owner_references: names::owners(sandbox),
            ..Default::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    names::SANDBOX_LABEL.to_string(),
                    sandbox.name.clone(),
                )])),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            egress: Some(egress),
            ingress: Some(ingress),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use agenttier_crds::{NetworkPort, ServiceRef};

    fn sandbox() -> SandboxRef {
        SandboxRef {
            namespace: "team".into(),
            name: "box".into(),
            uid: "u".into(),
        }
    }

    #[test]
    fn default_denies_everything_but_dns() {
        let policy = network_policy(&sandbox(), "rid", None);
        assert_eq!(policy.metadata.name.as_deref(), Some("box-netpol"));
        let spec = policy.spec.unwrap();
        assert_eq!(
            spec.pod_selector.unwrap().match_labels.unwrap()["agenttier.io/sandbox"],
            "box"
        );
        assert_eq!(spec.policy_types.unwrap(), ["Ingress", "Egress"]);
        let egress = spec.egress.unwrap();
        assert_eq!(egress.len(), 1);
        assert!(egress[0].to.is_none());
        let ports = egress[0].ports.clone().unwrap();
        assert_eq!(ports, [port("UDP", 53), port("TCP", 53)]);
        assert!(spec.ingress.unwrap().is_empty());
    }

    #[test]
    fn opt_ins_open_what_they_name() {
        let network = NetworkSpec {
            egress_rules: vec![
                NetworkRule {
                    cidr: Some("10.0.0.0/8".into()),
                    ports: vec![NetworkPort {
                        protocol: None,
                        port: 443,
                    }],
                    service_ref: None,
                },
                NetworkRule {
                    service_ref: Some(ServiceRef {
                        name: "db".into(),
                        namespace: None,
                        port: Some(5432),
                    }),
                    ..Default::default()
                },
            ],
            allow_peer_sandboxes: Some(true),
            ..Default::default()
        };
        let spec = network_policy(&sandbox(), "rid", Some(&network))
            .spec
            .unwrap();
        let egress = spec.egress.unwrap();
        assert_eq!(egress.len(), 4);
        assert_eq!(
            egress[1].to.as_ref().unwrap()[0]
                .ip_block
                .as_ref()
                .unwrap()
                .cidr,
            "10.0.0.0/8"
        );
        assert_eq!(egress[1].ports.as_ref().unwrap()[0], port("TCP", 443));
        assert!(
            egress[2].to.as_ref().unwrap()[0]
                .namespace_selector
                .is_some()
        );
        assert_eq!(egress[2].ports.as_ref().unwrap()[0], port("TCP", 5432));
        let peer = egress[3].to.as_ref().unwrap()[0]
            .pod_selector
            .clone()
            .unwrap();
        assert_eq!(peer.match_labels.unwrap()["agenttier.io/managed"], "true");
        assert_eq!(spec.ingress.unwrap().len(), 1);
    }

    #[test]
    fn allow_internet_opens_all_egress() {
        let network = NetworkSpec {
            allow_internet: Some(true),
            ..Default::default()
        };
        let egress = network_policy(&sandbox(), "rid", Some(&network))
            .spec
            .unwrap()
            .egress
            .unwrap();
        assert_eq!(egress[1], NetworkPolicyEgressRule::default());
    }
}
