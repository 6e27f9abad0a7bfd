//! The Kubernetes objects that run a weft lab over a cluster (`weft k8s`):
//!
//! - a ConfigMap `LAB` holding the lab file, unchanged;
//! - a headless Service `LAB`, which gives each pod the stable name
//!   `LAB-i.LAB` that the agents use as underlays (it publishes pods that
//!   are not ready yet: an agent is ready only once its peers resolve, so
//!   waiting for readiness first would never end);
//! - a StatefulSet `LAB` of `machines` pods, started all at once, each
//!   running `weft agent /etc/weft/lab.toml --machine $(POD_NAME)`, with
//!   readiness from the agent's readiness file (present while its share is
//!   built and its checks pass).
//!
//! Built from k8s-openapi's typed structures, so a field that is misspelt
//! or of the wrong type does not compile; printed as a YAML stream (the
//! documents separated by `---`), which `kubectl apply -f` takes. Not
//! JSON documents with `---` between them: kubectl reads a stream that
//! starts with `{` as JSON, and stops at the first `---` with "invalid
//! character '-'", having read only the ConfigMap.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    AppArmorProfile, Capabilities, ConfigMap, ConfigMapVolumeSource, Container,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, ObjectFieldSelector, PodSpec,
    PodTemplateSpec, Probe, SeccompProfile, SecurityContext, Service, ServicePort, ServiceSpec,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

/// What `weft k8s` needs to know of a lab.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// The lab's name: the objects' name and the pods' name prefix.
    pub lab: &'a str,
    /// The lab file, as the ConfigMap carries it.
    pub file: &'a str,
    /// Pods (machines).
    pub machines: usize,
    /// Whether the agents spread the lab themselves (`--machines N`): a
    /// file without `[machines]`. A file with them names its machines
    /// `LAB-0` .. `LAB-{N-1}`.
    pub spread: bool,
    /// The image with `weft` on its PATH (the repository's Containerfile).
    pub image: &'a str,
    /// The UDP port of the lab's VXLAN links.
    pub vxlan_port: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("lab name `{0}` is not a Kubernetes object name: use only a-z, 0-9 and '-', starting and ending with a letter or digit (rename the lab in its file)")]
    Name(String),
    #[error("--machines {0}: give at least 1")]
    Machines(usize),
}

/// Linux capabilities the agent needs, and nothing more: NET_ADMIN
/// (netlink: links, addresses, routes, bridges, VXLAN, nftables), SYS_ADMIN
/// (new network namespaces and their bind mounts under /run/netns,
/// setns), NET_RAW (the health checks' ICMP and the switch's packet
/// sockets).
pub const CAPABILITIES: [&str; 3] = ["NET_ADMIN", "NET_RAW", "SYS_ADMIN"];

/// Where the ConfigMap is mounted, and the file in it.
pub const LAB_FILE: &str = "/etc/weft/lab.toml";

/// The objects, in the order to apply them.
pub fn objects(s: &Spec) -> Result<(ConfigMap, Service, StatefulSet), Error> {
    if !is_object_name(s.lab) {
        return Err(Error::Name(s.lab.to_string()));
    }
    if s.machines == 0 {
        return Err(Error::Machines(0));
    }
    let labels: BTreeMap<String, String> = [
        ("app.kubernetes.io/name".to_string(), "weft".to_string()),
        ("app.kubernetes.io/instance".to_string(), s.lab.to_string()),
    ]
    .into();
    let meta = ObjectMeta {
        name: Some(s.lab.to_string()),
        labels: Some(labels.clone()),
        ..Default::default()
    };
    let config = ConfigMap {
        metadata: meta.clone(),
        data: Some([("lab.toml".to_string(), s.file.to_string())].into()),
        ..Default::default()
    };
    let service = Service {
        metadata: meta.clone(),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(labels.clone()),
            ports: Some(vec![ServicePort {
                name: Some("vxlan".into()),
                port: s.vxlan_port.into(),
                protocol: Some("UDP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut args = vec![
        "agent".to_string(),
        LAB_FILE.to_string(),
        "--machine".to_string(),
        "$(POD_NAME)".to_string(),
    ];
    if s.spread {
        args.extend(["--machines".to_string(), s.machines.to_string()]);
    }
    let container = Container {
        name: "agent".into(),
        image: Some(s.image.to_string()),
        command: Some(vec!["weft".into()]),
        args: Some(args),
        env: Some(vec![EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        security_context: Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(CAPABILITIES.iter().map(|c| c.to_string()).collect()),
                drop: Some(vec!["ALL".into()]),
            }),
            // (No allowPrivilegeEscalation = false: the API refuses it
            // beside SYS_ADMIN.) The runtime's default AppArmor profile
            // refuses mount(2),
            // which naming a network namespace needs.
            app_armor_profile: Some(AppArmorProfile {
                type_: "Unconfined".into(),
                ..Default::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(vec![
                    "sh".into(),
                    "-c".into(),
                    format!("test -e /run/weft/agents/{}@$POD_NAME.ready", s.lab),
                ]),
            }),
            period_seconds: Some(2),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "lab".into(),
                mount_path: "/etc/weft".into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount {
                name: "state".into(),
                mount_path: "/run/weft".into(),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    let set = StatefulSet {
        metadata: meta,
        spec: Some(StatefulSetSpec {
            service_name: Some(s.lab.to_string()),
            replicas: Some(s.machines as i32),
            // Every agent waits for its peers' names: start them together.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    // The agent takes its share down on SIGTERM.
                    termination_grace_period_seconds: Some(60),
                    volumes: Some(vec![
                        Volume {
                            name: "lab".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: s.lab.to_string(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        // weft's state outlives a restart of the container
                        // in the same pod, so the new agent finds what the
                        // old one built (or left half-made).
                        Volume {
                            name: "state".into(),
                            empty_dir: Some(EmptyDirVolumeSource {
                                medium: Some("Memory".into()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok((config, service, set))
}

/// The objects as `kubectl apply -f -` takes them.
pub fn render(s: &Spec) -> Result<String, Error> {
    let (c, v, t) = objects(s)?;
    let docs = [
        serde_yaml_ng::to_string(&c),
        serde_yaml_ng::to_string(&v),
        serde_yaml_ng::to_string(&t),
    ];
    Ok(docs
        .into_iter()
        .map(|d| d.expect("k8s-openapi types serialize"))
        .collect::<Vec<_>>()
        .join("---\n"))
}

/// An RFC 1123 label (what a StatefulSet's pods need, as their names are
/// also host names), short enough for `-NNN` pod suffixes.
pub fn is_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 52
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_kubernetes_refuses_are_refused() {
        assert!(is_object_name("lab-1"));
        for bad in ["", "lab_1", "Lab", "-lab", "lab-", &"x".repeat(53)] {
            assert!(!is_object_name(bad), "{bad}");
        }
        let s = Spec {
            lab: "my_lab",
            file: "",
            machines: 2,
            spread: true,
            image: "weft",
            vxlan_port: 4789,
        };
        assert_eq!(objects(&s).unwrap_err(), Error::Name("my_lab".into()));
        let s = Spec {
            lab: "lab",
            machines: 0,
            ..s
        };
        assert_eq!(objects(&s).unwrap_err(), Error::Machines(0));
    }
}
