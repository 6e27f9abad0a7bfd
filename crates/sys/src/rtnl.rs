//! A minimal blocking rtnetlink client for the few requests this crate makes
//! itself (nsid handling, link dumps in tests). The lab layer uses the async
//! `rtnetlink` crate; here a blocking socket keeps things on the thread that
//! sits in the right namespace.

use std::os::fd::{AsFd, IntoRawFd, OwnedFd};
use std::time::Instant;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};

use crate::error::{Error, Result};

/// A NETLINK_ROUTE socket in the calling thread's current network namespace.
///
/// Equivalent to `socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_ROUTE)`;
/// the socket stays tied to this namespace for its whole life, whatever
/// namespace the thread moves to later.
pub fn route_socket() -> Result<OwnedFd> {
    socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(|e| Error::os("opening a NETLINK_ROUTE socket", e))
}

pub(crate) struct Rtnl {
    sock: netlink_sys::Socket,
    // Requests (`new`, `request`) serve the tests' read-backs; the library
    // uses this type only to listen (`add_membership`, `recv_until`).
    #[cfg_attr(not(test), allow(dead_code))]
    seq: u32,
}

impl Rtnl {
    /// A client on a socket of the calling thread's namespace.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn new() -> Result<Self> {
        Ok(Self::from_fd(route_socket()?))
    }

    pub(crate) fn from_fd(fd: OwnedFd) -> Self {
        // SAFETY: `fd` is an open socket we own; ownership moves into the
        // netlink_sys::Socket, which closes it on drop.
        let sock = unsafe {
            <netlink_sys::Socket as std::os::fd::FromRawFd>::from_raw_fd(fd.into_raw_fd())
        };
        Rtnl { sock, seq: 0 }
    }

    /// Subscribes to a multicast group. Binds first: an unbound socket has
    /// port 0, the kernel's own, and the kernel skips it when broadcasting.
    pub(crate) fn add_membership(&mut self, group: u32, action: &str) -> Result<()> {
        self.sock
            .bind_auto()
            .map_err(|e| Error::os(action.to_string(), e))?;
        self.sock
            .add_membership(group)
            .map_err(|e| Error::os(action.to_string(), e))
    }

    /// Sends `msg` and collects the answers until the kernel's ACK (or the
    /// end of a dump). A NACK becomes an error naming `action`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn request(
        &mut self,
        action: &str,
        msg: RouteNetlinkMessage,
        dump: bool,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        let kernel = netlink_sys::SocketAddr::new(0, 0);
        self.sock
            .send_to(&buf, &kernel, 0)
            .map_err(|e| Error::os(action.to_string(), e))?;

        let mut out = Vec::new();
        loop {
            let (data, _) = self
                .sock
                .recv_from_full()
                .map_err(|e| Error::os(action.to_string(), e))?;
            for m in parse_all(&data, action)? {
                if m.header.sequence_number != self.seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::InnerMessage(inner) => out.push(inner),
                    NetlinkPayload::Error(e) if e.code.is_none() => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return Err(Error::os(action.to_string(), e.to_io()));
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    _ => {}
                }
            }
        }
    }

    /// Waits until `deadline` for the next datagram; `None` on timeout.
    pub(crate) fn recv_until(
        &self,
        deadline: Instant,
        action: &str,
    ) -> Result<Option<Vec<NetlinkMessage<RouteNetlinkMessage>>>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => continue,
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::os(action.to_string(), e)),
            }
        }
        let (data, _) = self
            .sock
            .recv_from_full()
            .map_err(|e| Error::os(action.to_string(), e))?;
        parse_all(&data, action).map(Some)
    }
}

fn parse_all(data: &[u8], action: &str) -> Result<Vec<NetlinkMessage<RouteNetlinkMessage>>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= data.len() {
        let len = u32::from_ne_bytes(data[off..off + 4].try_into().expect("4 bytes")) as usize;
        if len < 16 || off + len > data.len() {
            break;
        }
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..off + len]) {
            Ok(m) => out.push(m),
            // Messages this crate's parser does not know are not ours to
            // judge; skip them rather than failing the whole exchange.
            Err(e) => tracing::debug!("{action}: skipping undecodable netlink message: {e}"),
        }
        off += (len + 3) & !3;
    }
    Ok(out)
}
