//! The ends of `kind = "vxlan"` links: a kernel VXLAN device made from
//! weft's own network namespace — the machine's underlay, the namespace
//! `weft up` was started in, never assumed to be the host's — and put
//! straight into the node. The kernel keeps the VXLAN UDP socket in the
//! namespace the request came from, so the node sees only the device.

use std::os::fd::AsRawFd;

use weft_sys::netlink::{self as nl, Netlink, NewLink, VxlanSpec};
use weft_topo::VxlanOptions;

use super::Exec;
use crate::Error;

impl Exec<'_> {
    pub(crate) fn add_vxlan(
        &mut self,
        i: usize,
        node: &str,
        iface: &str,
        o: &VxlanOptions,
    ) -> Result<(), Error> {
        let at = self.attrs(node, iface);
        let index = self.alloc_index();
        let fd = self.handle(node)?.fd.as_raw_fd();
        // Opened on this (the main) thread, which never leaves the
        // namespace weft started in.
        let mut sock = Netlink::open().map_err(|e| {
            Error::io(
                "opening a netlink socket in weft's own namespace (the underlay)",
                e,
            )
        })?;
        let what = format!(
            "ip link add {iface} netns {node} type vxlan id {} local {} remote {} dstport {}",
            o.vni, o.local, o.remote, o.port
        );
        sock.push(
            nl::new_vxlan(
                &NewLink {
                    index,
                    name: iface,
                    mtu: at.mtu,
                    mac: at.mac.map(|m| m.0),
                },
                &VxlanSpec {
                    vni: o.vni,
                    local: o.local,
                    remote: o.remote,
                    port: o.port,
                },
                fd,
            ),
            what,
        );
        if let Err(es) = sock.flush() {
            let e = es.into_iter().next().expect("an error");
            if e.errno == libc::EEXIST {
                return Err(Error::VniTaken {
                    node: node.to_string(),
                    what: e.what,
                    vni: o.vni,
                    port: o.port,
                });
            }
            return Err(Error::kernel(node, e.what, e.errno));
        }
        self.applied.push(i);
        self.created.insert((node.to_string(), iface.to_string()));
        self.handle(node)?.index.insert(iface.to_string(), index);
        Ok(())
    }
}
