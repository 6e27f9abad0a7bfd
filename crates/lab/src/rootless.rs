//! What a lab cannot have when weft runs without root, refused before
//! anything is built (docs/library.md#without-root).
//!
//! Inside weft's user namespace everything that lives in the lab's own
//! namespaces works as under root; what needs the machine's own network
//! namespace (its interfaces, its underlay, its ports) cannot, since the
//! user has no capability there.

use weft_topo::{IfaceKind, Lab};

use crate::Error;

/// Refuses `lab` when this process builds in weft's user namespace and the
/// lab needs something only root may do; `Ok` otherwise (and always as
/// root).
pub(crate) fn check(lab: &Lab) -> Result<(), Error> {
    if !weft_sys::userns::inside() {
        return Ok(());
    }
    refuse(lab, weft_sys::userns::check_tun)
}

fn refuse(lab: &Lab, tun: impl Fn() -> Result<(), weft_sys::Error>) -> Result<(), Error> {
    let root = "run weft as root (e.g. with sudo) for this lab";
    if lab.machine.is_some() || !lab.machines.is_empty() {
        return Err(Error::invalid_help(
            format!(
                "lab {} spans machines: its VXLAN and tunnel ends live in the machine's own \
                 network namespace, where weft without root can do nothing",
                lab.name
            ),
            root,
        ));
    }
    let mut tuntap = None;
    for n in lab.nodes.values() {
        for i in n.interfaces.values() {
            match &i.kind {
                IfaceKind::Macvlan { host } => {
                    return Err(Error::invalid_help(
                        format!(
                            "{}:{} is a macvlan on the machine's interface {host}: weft without \
                             root cannot touch the machine's interfaces",
                            n.name, i.name
                        ),
                        root,
                    ))
                }
                IfaceKind::Vxlan(_) => {
                    return Err(Error::invalid_help(
                        format!(
                            "{}:{} is a VXLAN to another machine: its socket is in the machine's \
                             own network namespace, where weft without root can do nothing",
                            n.name, i.name
                        ),
                        root,
                    ))
                }
                IfaceKind::Tun(o) | IfaceKind::Tap(o) => {
                    if o.owner.is_some() || o.group.is_some() {
                        return Err(Error::invalid_help(
                            format!(
                                "{}:{} names an owner or group: without root, weft's user \
                                 namespace holds only you (as its root), so no other user \
                                 or group can own the device",
                                n.name, i.name
                            ),
                            "leave owner and group out (the device is yours), or run weft as root",
                        ));
                    }
                    if tuntap.is_none() {
                        tuntap = Some(format!("{}:{}", n.name, i.name));
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(at) = tuntap {
        if let Err(why) = tun() {
            return Err(Error::invalid_help(
                format!("{at} is a TUN/TAP device, and {why}"),
                "or remove the TUN/TAP interfaces (a veth does for most tests)",
            ));
        }
    }
    // Only the user's own uid is mapped (to root) inside: setuid to any
    // other failed at the service's start with a bare "Operation not
    // permitted", after the network was built.
    for n in lab.nodes.values() {
        for (name, svc) in &n.services {
            if let Some(u) = svc.user.as_deref().filter(|u| !matches!(*u, "root" | "0")) {
                return Err(Error::invalid_help(
                    format!(
                        "node {}, service {name} runs as user {u}: without root, weft's user \
                         namespace holds only you (as its root), so a service cannot become \
                         another user",
                        n.name
                    ),
                    "leave `user` out (the service then runs as you), or run weft as root",
                ));
            }
        }
    }
    // podman inside weft's user namespace takes itself for root and
    // reaches for the machine's storage (/var/lib/containers), which is
    // not the user's: it failed with "permission denied" and weft then
    // said the image was missing.
    if let Some(n) = lab.nodes.values().find(|n| n.container.is_some()) {
        return Err(Error::invalid_help(
            format!(
                "node {} runs an image: weft without root does not run containers yet (podman \
                 in weft's user namespace takes itself for root and cannot use the machine's \
                 image storage)",
                n.name
            ),
            "run weft as root for this lab, or run the program as a service of the node \
             ([nodes.NODE.services.NAME]) instead of an image",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab(text: &str) -> Lab {
        weft_topo::parse(text).unwrap().lab
    }

    #[test]
    fn what_lives_in_the_labs_namespaces_passes() {
        let l =
            lab("name = \"rl-a\"\n[nodes.br0]\nkind = \"bridge\"\n[nodes.a]\nattach = \"br0\"\n");
        refuse(&l, || Err(weft_sys::Error::Invalid("no".into()))).unwrap();
    }

    #[test]
    fn a_macvlan_on_the_machines_interface_is_refused() {
        let l = lab("name = \"rl-m\"\nallow_host_interfaces = true\n[nodes.a.interfaces.up0]\nkind = \"macvlan\"\nhost_interface = \"eth0\"\n");
        let e = refuse(&l, || Ok(())).unwrap_err();
        assert!(
            e.to_string()
                .contains("a:up0 is a macvlan on the machine's interface eth0"),
            "{e}"
        );
        assert!(e.help().unwrap().contains("root"));
    }

    #[test]
    fn a_lab_over_machines_is_refused_on_each_machine() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/vxlan.toml"),
        )
        .unwrap();
        let whole = lab(&text);
        let e = refuse(&whole, || Ok(())).unwrap_err();
        assert!(e.to_string().contains("spans machines"), "{e}");
        let m = whole.machines.keys().next().unwrap().clone();
        let share = weft_topo::machines::share(&whole, &m).unwrap();
        let e = refuse(&share, || Ok(())).unwrap_err();
        assert!(e.to_string().contains("spans machines"), "{e}");
    }

    #[test]
    fn a_tap_needs_a_usable_dev_net_tun() {
        let l = lab("name = \"rl-t\"\n[nodes.a.interfaces.tap0]\nkind = \"tap\"\n");
        refuse(&l, || Ok(())).unwrap();
        let e = refuse(&l, || {
            Err(weft_sys::Error::Rootless {
                what: "/dev/net/tun (mode 600) cannot be opened".into(),
                help: "chmod".into(),
            })
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("a:tap0 is a TUN/TAP device, and /dev/net/tun (mode 600)"),
            "{e}"
        );
    }

    #[test]
    fn a_service_as_another_user_is_refused_naming_it() {
        let svc = |user: &str| {
            lab(&format!(
                "name = \"rl-s\"\n[nodes.web.services.http]\ncommand = [\"sleep\", \"9\"]\n{user}"
            ))
        };
        let e = refuse(&svc("user = \"nobody\"\n"), || Ok(())).unwrap_err();
        assert!(
            e.to_string()
                .contains("node web, service http runs as user nobody"),
            "{e}"
        );
        assert!(e.help().unwrap().contains("leave `user` out"));
        refuse(&svc(""), || Ok(())).unwrap();
        refuse(&svc("user = \"root\"\n"), || Ok(())).unwrap();
    }

    #[test]
    fn a_container_is_refused_naming_the_node() {
        let l = lab("name = \"rl-c\"\n[nodes.web]\nimage = \"localhost/x\"\n");
        let e = refuse(&l, || Ok(())).unwrap_err();
        assert!(e.to_string().contains("node web runs an image"), "{e}");
        assert!(e.help().unwrap().contains("root"));
    }
}
