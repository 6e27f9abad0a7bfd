//! A lab from a topology file, a program run in one of its nodes, and a
//! capture of what crossed: `cargo run -p weft --example from_file --
//! examples/bridge.toml ns1 ns2` (as root, from the repository root).

use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, from, to] = &args[..] else {
        return Err("usage: from_file TOPOLOGY.toml FROM-NODE TO-NODE".into());
    };
    let lab = weft::Lab::from_file(file)?;
    let pcap = std::env::temp_dir().join(format!("{}.pcapng", lab.name()));
    let cap = lab.capture(&[from.as_str()], &pcap)?;
    let target = lab.node(to)?.ip().ok_or("the target node has no address")?;
    let out =
        lab.node(from)?
            .output(Command::new("ping").args(["-c", "2", &target.to_string()]))?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    println!("{} packet(s) captured into {}", cap.stop()?, pcap.display());
    Ok(())
}
