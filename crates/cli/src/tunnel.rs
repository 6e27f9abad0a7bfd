//! `weft keygen` and `weft tunnel`: flags and config file to options.

use crate::Failure;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use clap::{Args, ValueEnum};
use serde::Deserialize;
use weft_sys::tuntap::Mode;
use weft_tunnel::{CipherChoice, Config, PrivateKey, PublicKey, Timers, Tunnel};
use weft_tunnel_run::{Options, Transport};

#[derive(Args)]
pub struct KeygenArgs {
    /// The private key file to write (refused if it exists).
    file: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModeArg {
    Tun,
    Tap,
}

#[derive(Clone, Copy, Debug, ValueEnum, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransportArg {
    Udp,
    Tcp,
}

/// Flags override the config file's keys of the same name.
#[derive(Args, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TunnelArgs {
    /// A TOML file with any of these settings (keys named like the flags:
    /// dev, mode, key, peer-key, peer, listen, transport, address, mtu,
    /// underlay-mtu, keepalive, cipher, status, no-offload).
    #[arg(long, short = 'c')]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// The TUN/TAP device (opened if it exists, else created).
    #[arg(long)]
    dev: Option<String>,
    /// tun: IP packets; tap: Ethernet frames. Default tun.
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    /// This end's private key file (`weft keygen`).
    #[arg(long)]
    key: Option<PathBuf>,
    /// The peer's public key (base64).
    #[arg(long)]
    peer_key: Option<String>,
    /// The peer's address and port. Without it this end waits for the peer
    /// and answers wherever it is.
    #[arg(long)]
    peer: Option<String>,
    /// Local port, or address:port. Default 5000 (VTun's port).
    #[arg(long)]
    #[serde(default, deserialize_with = "port_or_address")]
    listen: Option<String>,
    /// udp (default) or tcp (for networks that block UDP; the end with
    /// --peer connects, the other listens).
    #[arg(long, value_enum)]
    transport: Option<TransportArg>,
    /// An IPv4 address with prefix for the device, e.g. 10.9.0.1/24.
    #[arg(long)]
    address: Option<String>,
    /// The device's MTU. Default: the underlay MTU minus the tunnel's
    /// overhead (so no inner packet needs fragmenting).
    #[arg(long)]
    mtu: Option<u16>,
    /// The underlay path's MTU. Default 1500.
    #[arg(long)]
    underlay_mtu: Option<u16>,
    /// Send a keepalive at least every this many seconds (NAT, firewalls,
    /// dead-peer detection). Default off.
    #[arg(long)]
    keepalive: Option<u64>,
    /// The data cipher: auto (the default: AES-256-GCM where both ends
    /// have AES instructions, else ChaCha20-Poly1305), chacha20-poly1305 or
    /// aes-256-gcm (only that one; a peer naming the other never connects).
    #[arg(long, value_parser = |s: &str| s.parse::<CipherChoice>())]
    #[serde(default, deserialize_with = "cipher_choice")]
    cipher: Option<CipherChoice>,
    /// Write the tunnel's status (JSON) to this file every second.
    #[arg(long)]
    status: Option<PathBuf>,
    /// Do not use TSO or UDP GSO/GRO even where the kernel has them
    /// (to compare, or to work around a kernel that mishandles them).
    #[arg(long)]
    #[serde(default)]
    no_offload: bool,
    /// Open the device in this named network namespace (`ip netns list`);
    /// the sockets stay in the namespace the tunnel runs in.
    #[arg(long)]
    netns: Option<String>,
    /// Impair the inner packets this end receives: the settings as JSON
    /// (weft_topo's `Impairment`; `weft up` passes them for a tunnel link
    /// with `impair`, docs/conditions.md).
    #[arg(long, hide = true)]
    #[serde(skip)]
    impair: Option<String>,
    /// A control socket through which `weft impair` retunes the
    /// impairment at run time (`weft up` passes one per end).
    #[arg(long, hide = true)]
    #[serde(skip)]
    control: Option<PathBuf>,
}

/// `cipher = "..."` in the file, refused at its position if misspelled.
fn cipher_choice<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<CipherChoice>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

/// `listen = 5000` in the file, as the flag's `--listen 5000`; a string
/// (`"0.0.0.0:5000"`) as it is.
fn port_or_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Listen {
        Port(u16),
        Text(String),
    }
    Ok(Some(
        match Listen::deserialize(d).map_err(|_| {
            serde::de::Error::custom("listen takes a port (5000) or \"address:port\"")
        })? {
            Listen::Port(p) => p.to_string(),
            Listen::Text(t) => t,
        },
    ))
}

pub fn keygen(a: &KeygenArgs) -> Result<ExitCode, Failure> {
    let k = PrivateKey::generate();
    // FILE.pub, as `--help` and docs/tunnel.md say (not FILE with its
    // extension replaced, which for `m1.pub` would be the key itself).
    let mut pubfile = a.file.clone().into_os_string();
    pubfile.push(".pub");
    let pubfile = PathBuf::from(pubfile);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&a.file)
        .map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    " (weft never overwrites a key; remove it first or pick another name)"
                        .to_string()
                }
                std::io::ErrorKind::NotFound => format!(
                    " (the directory {} does not exist; create it first)",
                    a.file
                        .parent()
                        .filter(|p| !p.as_os_str().is_empty())
                        .unwrap_or(Path::new("."))
                        .display()
                ),
                _ => String::new(),
            };
            format!("writing the private key to {}: {e}{why}", a.file.display())
        })?;
    use std::io::Write;
    f.write_all(format!("{}\n", k.to_base64()).as_bytes())
        .map_err(|e| format!("writing {}: {e}", a.file.display()))?;
    let p = k.public_key().to_base64();
    std::fs::write(&pubfile, format!("{p}\n"))
        .map_err(|e| format!("writing {}: {e}", pubfile.display()))?;
    println!("{p}");
    Ok(ExitCode::SUCCESS)
}

fn read_private_key(path: &Path) -> Result<PrivateKey, Failure> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("reading the private key {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "the private key {} is readable by other users (mode {:o}); `chmod 600 {}`",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        )
        .into());
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(PrivateKey::from_base64(&text)
        .map_err(|e| format!("the private key {}: {e}", path.display()))?)
}

fn merge(mut a: TunnelArgs) -> Result<TunnelArgs, Failure> {
    let Some(path) = a.config.take() else {
        return Ok(a);
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let f: TunnelArgs = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    // A relative key or status path in the file is relative to the file.
    let base = path.parent().unwrap_or(Path::new("."));
    let rel = |p: Option<PathBuf>| p.map(|p| base.join(p));
    Ok(TunnelArgs {
        config: None,
        dev: a.dev.or(f.dev),
        mode: a.mode.or(f.mode),
        key: a.key.or(rel(f.key)),
        peer_key: a.peer_key.or(f.peer_key),
        peer: a.peer.or(f.peer),
        listen: a.listen.or(f.listen),
        transport: a.transport.or(f.transport),
        address: a.address.or(f.address),
        mtu: a.mtu.or(f.mtu),
        underlay_mtu: a.underlay_mtu.or(f.underlay_mtu),
        keepalive: a.keepalive.or(f.keepalive),
        cipher: a.cipher.or(f.cipher),
        status: a.status.or(rel(f.status)),
        no_offload: a.no_offload || f.no_offload,
        netns: a.netns.or(f.netns),
        impair: a.impair,
        control: a.control,
    })
}

/// The device MTU that keeps every encapsulated packet within the
/// underlay MTU: minus IP and UDP headers and the tunnel's 32 bytes, and
/// for TAP the inner Ethernet header too.
pub fn inner_mtu(underlay: u16, v6: bool, mode: Mode) -> u16 {
    let ip = if v6 {
        weft_tunnel::UDP6_OVERHEAD
    } else {
        weft_tunnel::UDP4_OVERHEAD
    } as u16;
    let eth = if mode == Mode::Tap { 14 } else { 0 };
    underlay.saturating_sub(ip + eth).max(576)
}

pub fn run(a: TunnelArgs) -> Result<ExitCode, Failure> {
    let a = merge(a)?;
    if let Some(ns) = &a.netns {
        weft_sys::netns::validate_name(ns).map_err(|e| format!("--netns {ns}: {e}"))?;
        weft_tunnel_run::set_device_netns(ns);
    }
    let key = read_private_key(
        a.key
            .as_deref()
            .ok_or("--key FILE is required (make one with `weft keygen FILE`)")?,
    )?;
    let peer_key = a
        .peer_key
        .as_deref()
        .ok_or("--peer-key is required: the peer's public key (its FILE.pub from `weft keygen`)")?;
    let peer_key = PublicKey::from_base64(peer_key).map_err(|e| format!("--peer-key: {e}"))?;
    let peer: Option<SocketAddr> = match &a.peer {
        None => None,
        Some(p) => Some(
            p.to_socket_addrs()
                .map_err(|e| format!("--peer {p}: {e} (give address:port)"))?
                .next()
                .ok_or_else(|| format!("--peer {p}: no address"))?,
        ),
    };
    let v6 = peer.is_some_and(|p| p.is_ipv6());
    let unspecified: IpAddr = if v6 {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    let listen = match a.listen.as_deref() {
        None => SocketAddr::new(unspecified, 5000),
        Some(l) => match l.parse::<u16>() {
            Ok(port) => SocketAddr::new(unspecified, port),
            Err(_) => l
                .parse()
                .map_err(|_| format!("--listen {l}: give a port or address:port"))?,
        },
    };
    let mode = match a.mode.unwrap_or(ModeArg::Tun) {
        ModeArg::Tun => Mode::Tun,
        ModeArg::Tap => Mode::Tap,
    };
    let transport = match a.transport.unwrap_or(TransportArg::Udp) {
        TransportArg::Udp => Transport::Udp,
        TransportArg::Tcp => Transport::Tcp,
    };
    let address = match &a.address {
        None => None,
        Some(s) => {
            let n: ipnet::Ipv4Net = s.parse().map_err(|_| {
                format!("--address {s}: give an IPv4 address with prefix, e.g. 10.9.0.1/24")
            })?;
            Some((n.addr(), n.prefix_len()))
        }
    };
    let impair = match &a.impair {
        None => None,
        Some(j) => {
            let i: weft_topo::impair::Impairment =
                serde_json::from_str(j).map_err(|e| format!("--impair: {e}"))?;
            i.check().map_err(|e| format!("--impair: {e}"))?;
            Some(i)
        }
    };
    let mtu = a
        .mtu
        .unwrap_or_else(|| inner_mtu(a.underlay_mtu.unwrap_or(1500), v6, mode));
    let opts = Options {
        dev: a.dev.unwrap_or_else(|| "weft0".into()),
        mode,
        mtu,
        address,
        listen,
        transport,
        connect: if transport == Transport::Tcp {
            peer
        } else {
            None
        },
        status_file: a.status,
        offload: !a.no_offload,
        impair,
        control: a.control,
    };
    let timers = Timers {
        persistent_keepalive: a.keepalive.filter(|&k| k > 0).map(Duration::from_secs),
        ..Timers::default()
    };
    let start = Instant::now();
    let wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let cipher = a.cipher.unwrap_or_default();
    let t = Tunnel::new(
        Config {
            private_key: key,
            peer: peer_key,
            endpoint: peer,
            timers,
            wall_clock_at_zero: wall,
            cipher,
        },
        start.elapsed(),
    );
    let stop = weft_tunnel_run::stop_on_signals();
    // What `auto` will pick depends on the peer too: say this end's half.
    let pick = match cipher {
        CipherChoice::Auto if weft_tunnel::aes_is_fast() => {
            " (aes-256-gcm where the peer has AES instructions too)"
        }
        CipherChoice::Auto => {
            " (chacha20-poly1305 unless the peer names aes-256-gcm: no AES instructions here)"
        }
        CipherChoice::Only(_) => "",
    };
    eprintln!(
        "weft tunnel: {} {} (mtu {mtu}) <-> {} over {} {listen}, peer {}, cipher {cipher}{pick}",
        match mode {
            Mode::Tun => "tun",
            Mode::Tap => "tap",
        },
        opts.dev,
        peer.map_or("(waiting for the peer)".into(), |p| p.to_string()),
        match transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        },
        peer_key,
    );
    let t = weft_tunnel_run::run(&opts, t, start, stop)?;
    let c = t.counters();
    eprintln!(
        "weft tunnel: stopped; sent {} packets, received {}, {} handshakes, {} dropped",
        c.tx_packets,
        c.rx_packets,
        c.handshakes_completed,
        c.drops_total()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::TunnelArgs;

    /// docs/tunnel.md shows a `weft tunnel -c` file: the reader takes
    /// every key of it (crates/topo/tests/docs.rs checks the lab files).
    #[test]
    fn the_config_file_in_the_docs_parses() {
        let page = include_str!("../../../docs/tunnel.md");
        let blocks: Vec<&str> = page
            .split("```toml\n")
            .skip(1)
            .map(|b| b.split("```").next().unwrap())
            .filter(|b| b.contains("peer-key"))
            .collect();
        assert!(!blocks.is_empty(), "docs/tunnel.md shows no tunnel file");
        for b in blocks {
            let f: TunnelArgs = toml::from_str(b).unwrap_or_else(|e| panic!("{e}\n{b}"));
            assert!(f.dev.is_some() && f.key.is_some() && f.peer_key.is_some());
        }
    }

    #[test]
    fn listen_takes_a_port_or_an_address() {
        let f: TunnelArgs = toml::from_str("listen = 5000").unwrap();
        assert_eq!(f.listen.as_deref(), Some("5000"));
        let f: TunnelArgs = toml::from_str("listen = \"127.0.0.1:5001\"").unwrap();
        assert_eq!(f.listen.as_deref(), Some("127.0.0.1:5001"));
        let f: TunnelArgs = toml::from_str("dev = \"wt0\"").unwrap();
        assert_eq!(f.listen, None);
        let e = toml::from_str::<TunnelArgs>("listen = 70000")
            .err()
            .unwrap();
        assert!(e.to_string().contains("listen takes a port"), "{e}");
    }
}
