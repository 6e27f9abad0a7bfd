//! `weft import script FILE.sh` / `weft import clab FILE.clab.yml`: write
//! the weft lab file that builds what the script or topology builds
//! (docs/import.md). Reads files and writes one; never touches the kernel.

use crate::Failure;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

#[derive(Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// A shell script of ip, brctl, tunctl, vconfig, ovs-vsctl and sysctl
    /// commands (replayed on a model, not run).
    Script(Common),
    /// A containerlab topology (linux, bridge, ovs-bridge and host nodes).
    Clab(Common),
}

#[derive(Args)]
struct Common {
    file: PathBuf,
    /// Write the lab file here (default: standard output).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// The lab's name (default: from the file name, or the topology's name).
    #[arg(short, long)]
    name: Option<String>,
}

pub fn run(args: &ImportArgs) -> Result<ExitCode, Failure> {
    let (c, clab) = match &args.what {
        What::Script(c) => (c, false),
        What::Clab(c) => (c, true),
    };
    let text = std::fs::read_to_string(&c.file)
        .map_err(|e| format!("cannot read {}: {e}", c.file.display()))?;
    let dir = c.file.parent().map(Path::to_path_buf).unwrap_or_default();
    let result = if clab {
        weft_import::clab(&text, c.name.as_deref())
    } else {
        let stem = c.file.file_name().and_then(|s| s.to_str()).unwrap_or("lab");
        let stem = stem.strip_suffix(".sh").unwrap_or(stem);
        let name = c
            .name
            .clone()
            .unwrap_or_else(|| weft_import::lab_name_from(stem));
        let batch = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        weft_import::script(&text, &name, &batch)
    };
    match result {
        Ok(imp) => {
            for w in &imp.warnings {
                eprintln!("{}: warning: {w}", c.file.display());
            }
            match &c.output {
                Some(o) => {
                    std::fs::write(o, &imp.toml)
                        .map_err(|e| format!("cannot write {}: {e}", o.display()))?;
                    eprintln!(
                        "wrote {} ({} warning(s)); `weft up {}` builds it",
                        o.display(),
                        imp.warnings.len(),
                        o.display()
                    );
                }
                None => print!("{}", imp.toml),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errs) => {
            let diags: Vec<_> = errs.0.iter().map(|e| diagnostic(&text, e)).collect();
            eprint!(
                "{}",
                crate::render::file_diagnostics(&c.file, &text, &diags, false)
            );
            Err(format!(
                "{} was not imported: {} problem(s)",
                c.file.display(),
                errs.0.len()
            )
            .into())
        }
    }
}

/// One error as a file problem, shown like `weft up`'s (its position
/// once, its words once): at its line when it is in the input itself; a
/// line of a file the input reads (`ip -batch FILE`) is named in its words.
fn diagnostic(text: &str, e: &weft_import::ImportError) -> weft_topo::Diagnostic {
    let (message, span) = match &e.origin {
        Some(o) if o.file.is_none() => (e.message.clone(), weft_import::line_span(text, o.line)),
        Some(o) => (format!("{o}: {}", e.message), None),
        None => (e.message.clone(), None),
    };
    weft_topo::Diagnostic {
        message,
        span,
        help: e.help.clone().filter(|h| !h.is_empty()),
    }
}
