//! Two hosts on weft's switch, one port delayed: ping across, then a UDP
//! echo timed, then the lab goes when `lab` is dropped.
//!
//! As root, with the weft binary built (`cargo build -p weft-cli`):
//! `cargo run -p weft --example two_hosts`

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use weft::{Impair, Lab};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lab = Lab::builder("two-hosts")
        .switch("sw", |s| s.port("p1").port("p2"))
        .host("a", |n| n.iface("eth0", &["10.0.0.1/24"]))
        .host("b", |n| n.iface("eth0", &["10.0.0.2/24"]))
        .link_impaired(
            "a:eth0",
            "sw:p1",
            Impair::new().delay(Duration::from_millis(25)),
        )
        .link("b:eth0", "sw:p2")
        .build()?;
    println!("lab {} is up", lab.name());
    println!("a pings b: {}", lab.ping("a", "b")?);

    let server = lab
        .node("b")?
        .run(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 9000)))??;
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let (n, from) = server.recv_from(&mut buf)?;
        server.send_to(&buf[..n], from)
    });
    let client = lab
        .node("a")?
        .run(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))??;
    let t0 = Instant::now();
    client.send_to(b"hello", "10.0.0.2:9000")?;
    let mut buf = [0u8; 1500];
    client.recv_from(&mut buf)?;
    println!(
        "UDP echo round trip: {:?} (50 ms of it the switch's delay)",
        t0.elapsed()
    );
    echo.join().expect("echo thread")?;
    Ok(())
}
