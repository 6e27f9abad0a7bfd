//! `weft k8s FILE [--machines N] [--image IMAGE]`: prints the Kubernetes
//! objects that run the lab over a cluster, one `weft agent` per pod
//! (docs/scale.md).

use crate::Failure;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct K8sArgs {
    /// The topology file.
    file: PathBuf,
    /// Pods to spread a file without [machines] over (default: one per
    /// 500 nodes, at least 2).
    #[arg(long)]
    machines: Option<usize>,
    /// The image with weft on its PATH (built from the repository's
    /// Containerfile).
    #[arg(long, default_value = "localhost/weft:latest")]
    image: String,
}

pub fn run(a: K8sArgs) -> Result<ExitCode, Failure> {
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| format!("reading {}: {e}", a.file.display()))?;
    let lab = match weft_topo::parse(&text) {
        Ok(p) => p.lab,
        Err(d) => {
            return Err(format!(
                "{}: {} problem(s); `weft up --dry-run {}` shows them with their positions",
                a.file.display(),
                d.0.len(),
                a.file.display()
            )
            .into())
        }
    };
    let name = lab.name.clone();
    let (machines, spread) = if lab.machines.is_empty() {
        let n = a
            .machines
            .unwrap_or_else(|| lab.nodes.len().div_ceil(500).max(2));
        // The same checks the agents will make, before anything is applied.
        weft_topo::placement::spread(&mut lab.clone(), n)?;
        (n, true)
    } else {
        // The pods are LAB-0 ..: the file's machines must be named so.
        let want: Vec<String> = (0..lab.machines.len())
            .map(|i| format!("{name}-{i}"))
            .collect();
        let have: Vec<String> = lab.machines.keys().cloned().collect();
        let mut sorted = want.clone();
        sorted.sort();
        if have != sorted {
            return Err(format!(
                "lab {name} names its machines {}, but the pods of its StatefulSet are {}: rename the machines so (with underlay = \"{name}-0.{name}\" and so on), or remove [machines] and machine = ... to have weft place the nodes",
                have.join(", "),
                want.join(", ")
            ).into());
        }
        if a.machines.is_some_and(|n| n != lab.machines.len()) {
            return Err(format!(
                "lab {name} declares {} machines; leave out --machines",
                lab.machines.len()
            )
            .into());
        }
        (lab.machines.len(), false)
    };
    let out = weft_k8s::render(&weft_k8s::Spec {
        lab: &name,
        file: &text,
        machines,
        spread,
        image: &a.image,
        vxlan_port: lab.vxlan_port.unwrap_or(weft_topo::file::VXLAN_PORT),
    })
    .map_err(|e| Failure::Said(e.to_string()))?;
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
