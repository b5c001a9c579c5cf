//! A Service per forwarded port, and an Ingress when a preview domain is configured (contract
//! §4.11): `pf-<sandbox>-<port>`, selecting the sandbox's Pod, host
//! `sandbox-<name>-<port>.<domain>`. The gateway records forwarded ports in
//! `status.forwardedPorts`; the controller makes these objects follow that list.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names;
use crate::store::kubernetes::SandboxRef;

/// Where previews are published.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreviewConfig {
    /// The preview domain (`--preview-domain`); no Ingress without it.
    pub domain: Option<String>,
    /// The IngressClass of preview Ingresses.
    pub ingress_class: Option<String>,
}

/// The selector of a sandbox's port Services.
pub fn port_selector(sandbox: &str) -> String {
    format!(
        "{}=true,{}={sandbox}",
        names::PORT_FORWARD_LABEL,
        names::SANDBOX_LABEL
    )
}

/// The preview host of a port.
pub fn preview_host(sandbox: &str, port: u16, domain: &str) -> String {
    format!("sandbox-{sandbox}-{port}.{domain}")
}

fn metadata(sandbox: &SandboxRef, runtime_id: &str, port: u16) -> ObjectMeta {
    let mut labels = names::sandbox_labels(sandbox, runtime_id);
    labels.insert(names::PORT_FORWARD_LABEL.into(), "true".into());
    labels.insert(names::PORT_LABEL.into(), port.to_string());
    ObjectMeta {
        name: Some(names::port_service(&sandbox.name, port)),
        namespace: Some(sandbox.namespace.clone()),
        labels: Some(labels),
        owner_references: names::owners(sandbox),
        ..Default::default()
    }
}

/// The ClusterIP Service of a forwarded port.
pub fn port_service(sandbox: &SandboxRef, runtime_id: &str, port: u16) -> Service {
    Service {
        metadata: metadata(sandbox, runtime_id, port),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(BTreeMap::from([
                (names::SANDBOX_LABEL.to_string(), sandbox.name.clone()),
                (
                    names::COMPONENT_LABEL.to_string(),
                    names::COMPONENT_SANDBOX.to_string(),
                ),
            ])),
            ports: Some(vec![ServicePort {
                name: Some(format!("port-{port}")),
                port: i32::from(port),
                target_port: Some(IntOrString::Int(i32::from(port))),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The preview Ingress of a forwarded port.
pub fn port_ingress(
    sandbox: &SandboxRef,
    runtime_id: &str,
    port: u16,
    preview: &PreviewConfig,
) -> Option<Ingress> {
    let domain = preview.domain.as_deref()?;
    Some(Ingress {
        metadata: metadata(sandbox, runtime_id, port),
        spec: Some(IngressSpec {
            ingress_class_name: preview.ingress_class.clone(),
            rules: Some(vec![IngressRule {
                host: Some(preview_host(&sandbox.name, port, domain)),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: names::port_service(&sandbox.name, port),
                                port: Some(ServiceBackendPort {
                                    number: Some(i32::from(port)),
                                    name: None,
                                }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sandbox() -> SandboxRef {
        SandboxRef {
            namespace: "team".into(),
            name: "box".into(),
            uid: "u".into(),
        }
    }

    #[test]
    fn services_select_the_sandbox_pod_on_the_port() {
        let service = port_service(&sandbox(), "rid", 8080);
        assert_eq!(service.metadata.name.as_deref(), Some("pf-box-8080"));
        let labels = service.metadata.labels.unwrap();
        assert_eq!(labels["agenttier.io/port-forward"], "true");
        assert_eq!(labels["agenttier.io/port"], "8080");
        let spec = service.spec.unwrap();
        assert_eq!(spec.selector.unwrap()["agenttier.io/sandbox"], "box");
        assert_eq!(
            spec.ports.unwrap()[0].target_port,
            Some(IntOrString::Int(8080))
        );
    }

    #[test]
    fn ingresses_exist_only_with_a_preview_domain() {
        assert!(port_ingress(&sandbox(), "rid", 80, &PreviewConfig::default()).is_none());
        let preview = PreviewConfig {
            domain: Some("preview.example.com".into()),
            ingress_class: Some("nginx".into()),
        };
        let ingress = port_ingress(&sandbox(), "rid", 80, &preview).unwrap();
        let spec = ingress.spec.unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        assert_eq!(
            spec.rules.unwrap()[0].host.as_deref(),
            Some("sandbox-box-80.preview.example.com")
        );
    }
}
