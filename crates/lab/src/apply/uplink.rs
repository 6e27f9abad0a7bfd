//! Uplinks on the machine's own interfaces: a macvlan made in weft's own
//! namespace on top of the real interface and put straight into the node
//! (the file must say `allow_host_interfaces = true`). Nothing else of the
//! machine is changed: its interface keeps its addresses and routes.

use std::os::fd::{AsFd, AsRawFd};

use weft_sys::netlink::{self as nl, Netlink, NewLink};

use super::Exec;
use crate::Error;

impl Exec<'_> {
    pub(crate) fn add_macvlan(
        &mut self,
        i: usize,
        node: &str,
        iface: &str,
        host: &str,
    ) -> Result<(), Error> {
        let lower = weft_sys::if_index(host).ok_or_else(|| {
            Error::Missing {
                what: format!("node {node}: `{iface}` is a macvlan on the machine's interface {host}, and there is none"),
                help: "`ip link` lists the machine's interfaces".into(),
            }
        })?;
        let at = self.attrs(node, iface);
        let fd = self.handle(node)?.fd.as_raw_fd();
        let mut sock = Netlink::open()
            .map_err(|e| Error::io("opening a netlink socket in weft's own namespace", e))?;
        sock.push(
            nl::new_macvlan(
                &NewLink {
                    index: 0,
                    name: iface,
                    mtu: at.mtu,
                    mac: at.mac.map(|m| m.0),
                },
                lower,
                fd,
            ),
            format!("ip link add link {host} name {iface} netns {node} type macvlan mode bridge"),
        );
        if let Err(es) = sock.flush() {
            let e = es.into_iter().next().expect("an error");
            return Err(Error::kernel(node, e.what, e.errno));
        }
        self.applied.push(i);
        self.created.insert((node.to_string(), iface.to_string()));
        // A socket of its own: the node's may hold queued requests.
        let h = self.handle(node)?;
        let mut look = Netlink::from_fd(weft_sys::netns::route_socket_in(h.fd.as_fd())?)
            .map_err(|e| Error::io(format!("netlink socket in node {node}"), e))?;
        let links = look
            .links()
            .map_err(|e| Error::io(format!("listing the interfaces of node {node}"), e))?;
        let idx = links
            .iter()
            .find(|l| l.name == iface)
            .map(|l| l.index)
            .ok_or_else(|| Error::NoInterface {
                node: node.to_string(),
                iface: iface.to_string(),
                known: String::new(),
            })?;
        h.index.insert(iface.to_string(), idx);
        Ok(())
    }
}
