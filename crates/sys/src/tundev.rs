//! Opening the TUN or TAP device a `weft tunnel` process moves packets
//! through: persistent (a lab's) or its own, optionally with virtio-net
//! headers and TSO, and optionally in another network namespace than the
//! process's sockets.

use std::net::Ipv4Addr;

use tun_rs::{DeviceBuilder, Layer, SyncDevice};

use crate::error::{Error, Result};
use crate::tuntap::Mode;

/// The device a tunnel wants.
#[derive(Clone, Debug)]
pub struct DeviceSpec {
    /// Opened if it exists (a lab's persistent TUN/TAP), created otherwise
    /// (and removed when the tunnel stops).
    pub dev: String,
    pub mode: Mode,
    /// The device's MTU.
    pub mtu: u16,
    /// An IPv4 address for the device, if wanted.
    pub address: Option<(Ipv4Addr, u8)>,
    /// Ask for virtio-net headers and TSO.
    pub offload: bool,
}

/// How packets cross the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevKind {
    /// One packet (or frame) per read and write.
    Plain,
    /// A TUN with virtio-net headers and TSO: 64 KiB TCP segments in,
    /// coalesced segments out.
    TunTso,
    /// A TAP with virtio-net headers and TSO: 64 KiB TCP segments behind
    /// an Ethernet header in; frames written one by one behind an empty
    /// header.
    TapTso,
}

/// The network namespace [`open`] opens the device in, when not
/// the process's own (`weft tunnel --netns`: the device in a lab node, the
/// sockets in the machine's namespace).
static DEVICE_NETNS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Open the device in the named network namespace from now on.
pub fn set_device_netns(name: &str) {
    let _ = DEVICE_NETNS.set(name.to_string());
}

fn what(s: &DeviceSpec) -> &'static str {
    match s.mode {
        Mode::Tun => "TUN",
        Mode::Tap => "TAP",
    }
}

/// The device `s` asks for, with TSO and virtio-net headers if `offload`.
fn builder(s: &DeviceSpec, offload: bool) -> DeviceBuilder {
    let mut b = DeviceBuilder::new()
        .name(&s.dev)
        .layer(match s.mode {
            Mode::Tun => Layer::L3,
            Mode::Tap => Layer::L2,
        })
        .mtu(s.mtu)
        .enable(true);
    if offload {
        b = b.with(|b| {
            b.offload(true);
        });
    }
    if let Some((a, p)) = s.address {
        b = b.ipv4(a, p, None);
    }
    b
}

/// Open (or create) the device, set its MTU and address, bring it up,
/// non-blocking; with TSO when `s.offload` and the kernel takes the
/// offload flags, else plain.
pub fn open(s: &DeviceSpec) -> Result<(SyncDevice, DevKind)> {
    match DEVICE_NETNS.get() {
        Some(ns) => crate::netns::run_in_named(ns, || open_here(s))?,
        None => open_here(s),
    }
}

/// Packets the device's ring holds (TUN's default is 500). Linux 6.18's
/// TUN drops what does not fit instead of holding the sender back, so a
/// burst the reading thread cannot take at once is lost: 500 lost 6,700 to
/// 12,600 of 320,000 64-byte packets paced at 80 kpps in a 4 s run, 4096
/// none in two of three runs (docs/performance.md, Tunnel). The ring holds
/// pointers; the packets in it are charged to their senders' sockets.
const RING: u32 = 4096;

/// Lengthen the device's ring to [`RING`]. Best effort (a longer one is
/// kept; without the right to change it the tunnel runs on the default).
fn lengthen_ring(d: &SyncDevice) {
    if d.tx_queue_len().is_ok_and(|l| l < RING) {
        let _ = d.set_tx_queue_len(RING);
    }
}

/// [`open`] in the calling thread's namespace.
fn open_here(s: &DeviceSpec) -> Result<(SyncDevice, DevKind)> {
    if s.offload {
        if let Ok(d) = builder(s, true).build_sync() {
            lengthen_ring(&d);
            if d.tcp_gso() {
                d.set_nonblocking(true).map_err(|e| Error::Os {
                    action: format!("making device {} non-blocking", s.dev),
                    err: e,
                    hint: None,
                })?;
                let kind = match s.mode {
                    Mode::Tun => DevKind::TunTso,
                    Mode::Tap => DevKind::TapTso,
                };
                return Ok((d, kind));
            }
        }
    }
    let d = builder(s, false).build_sync().map_err(|e| Error::Os {
        action: format!("opening {} device {}", what(s), s.dev),
        hint: Some(
            "a device of that name and the other mode (TUN/TAP) may exist; /dev/net/tun must be there"
                .into(),
        ),
        err: e,
    })?;
    lengthen_ring(&d);
    d.set_nonblocking(true).map_err(|e| Error::Os {
        action: format!("making {} device {} non-blocking", what(s), s.dev),
        err: e,
        hint: None,
    })?;
    Ok((d, DevKind::Plain))
}
