//! Where a program that uses this library keeps weft's state and finds
//! the `weft` binary that runs a lab's helper processes (the switch
//! datapath, tunnel ends).
//!
//! The `weft` command needs none of this: its state is under `/run/weft`
//! (or `WEFT_STATE_DIR`; without root, `$XDG_RUNTIME_DIR/weft/state`,
//! which joining weft's user namespace puts in `WEFT_STATE_DIR`) and it starts itself as the helper. A test binary
//! of another crate is not `weft`, so [`Context`] finds the binary by a
//! documented lookup (see [`Context::weft_exe`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use crate::Error;

/// The state directory and helper binary in force in this process, once a
/// [`Context`] was used (`None`: the environment and the running
/// executable, as for the `weft` command).
static INSTALLED: RwLock<Option<Installed>> = RwLock::new(None);

#[derive(Clone, Debug)]
struct Installed {
    state_dir: Option<PathBuf>,
    /// None: the lookup found none, which only a lab with a switch, a
    /// wire, a tunnel or services minds (asked again then, for its error).
    weft_exe: Option<PathBuf>,
}

/// Where labs keep their state and where helper processes come from.
///
/// ```no_run
/// let ctx = weft::Context::new()
///     .state_dir("/tmp/my-tests-weft")
///     .weft_exe("/usr/local/bin/weft");
/// let lab = weft::Lab::from_toml_with(&ctx, "name = \"x\"\n[nodes.a]\n").unwrap();
/// # drop(lab);
/// ```
///
/// A process has one state directory: the first context used fixes it,
/// and a later one naming another directory is refused (labs are found
/// by name in it, by this process and by the helpers it starts).
#[derive(Clone, Debug, Default)]
pub struct Context {
    state_dir: Option<PathBuf>,
    weft_exe: Option<PathBuf>,
    pub(crate) exact: bool,
}

impl Context {
    /// The defaults: state in `WEFT_STATE_DIR` or `/run/weft` (without
    /// root: `$XDG_RUNTIME_DIR/weft/state`, private to weft's user
    /// namespace), the
    /// `weft` binary found by the lookup of [`Context::weft_exe`].
    pub fn new() -> Context {
        Context::default()
    }

    /// Keep the labs' state in `dir` instead of `WEFT_STATE_DIR` or
    /// `/run/weft`. `weft status`, `weft down` and the other commands see
    /// these labs when run with `WEFT_STATE_DIR` set to the same `dir`.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Context {
        self.state_dir = Some(dir.into());
        self
    }

    /// Build labs under the name their file or builder gives, instead of
    /// that name made unique to the run (`NAME-PID-N`, so that tests
    /// building the same lab run in parallel). An exact name is refused
    /// while a lab of that name is built.
    pub fn exact_name(mut self) -> Context {
        self.exact = true;
        self
    }

    /// Run helper processes (`weft datapath`, `weft tunnel`) with this
    /// binary. Without it, the first of these that exists is used:
    ///
    /// 1. `WEFT_EXE`;
    /// 2. `CARGO_BIN_EXE_weft` (set by cargo for the tests of a package
    ///    that has the `weft` binary);
    /// 3. the running program, if it is called `weft`;
    /// 4. `weft` in cargo's target directory of the running program (a
    ///    test binary in `target/debug/deps/` finds `target/debug/weft`,
    ///    there once `cargo build -p weft-cli` or a workspace test built
    ///    it);
    /// 5. `weft` on `PATH`.
    pub fn weft_exe(mut self, exe: impl Into<PathBuf>) -> Context {
        self.weft_exe = Some(exe.into());
        self
    }

    /// The `weft` binary this context starts helpers with, by the lookup
    /// above; an error saying how to provide one when none is found.
    pub fn find_weft_exe(&self) -> Result<PathBuf, Error> {
        if let Some(e) = &self.weft_exe {
            return if e.is_file() {
                Ok(e.clone())
            } else {
                Err(missing(format!(
                    "the weft binary {} does not exist",
                    e.display()
                )))
            };
        }
        let env = |k: &str| {
            std::env::var_os(k)
                .map(PathBuf::from)
                .filter(|p| p.is_file())
        };
        if let Some(p) = env("WEFT_EXE").or_else(|| env("CARGO_BIN_EXE_weft")) {
            return Ok(p);
        }
        let me = std::env::current_exe().ok();
        if let Some(me) = &me {
            if me.file_name().is_some_and(|n| n == "weft") {
                return Ok(me.clone());
            }
            if let Some(p) = in_target_dir(me) {
                return Ok(p);
            }
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        for d in std::env::split_paths(&path) {
            let p = d.join("weft");
            if p.is_file() {
                return Ok(p);
            }
        }
        Err(missing(
            "no weft binary found (WEFT_EXE, CARGO_BIN_EXE_weft, the target directory, PATH)"
                .into(),
        ))
    }

    /// Make this context the process's: its state directory (if it names
    /// one) and its helper binary.
    pub(crate) fn install(&self) -> Result<(), Error> {
        // A binary named by the context must exist; one the lookup does
        // not find is needed only by labs with helper processes: a lab of
        // kernel nodes (hosts, bridges, NAT) builds without it, as
        // docs/library.md says.
        let exe = kept_exe(self.find_weft_exe(), self.weft_exe.is_some())?;
        let mut g = INSTALLED.write().unwrap_or_else(|p| p.into_inner());
        if let (Some(old), Some(new)) = (
            g.as_ref().and_then(|i| i.state_dir.as_ref()),
            &self.state_dir,
        ) {
            if old != new {
                return Err(Error::invalid_help(
                    format!(
                        "this process keeps weft's state in {}, and a context asks for {}",
                        old.display(),
                        new.display()
                    ),
                    "use one state directory per process (labs are told apart by their names)",
                ));
            }
        }
        let state_dir = self
            .state_dir
            .clone()
            .or_else(|| g.as_ref().and_then(|i| i.state_dir.clone()));
        *g = Some(Installed {
            state_dir,
            weft_exe: exe,
        });
        Ok(())
    }
}

/// What `install` keeps of the lookup: the binary, or none when the
/// lookup found none (deferred to the first helper); a binary the context
/// named that does not exist is an error at once.
fn kept_exe(found: Result<PathBuf, Error>, named: bool) -> Result<Option<PathBuf>, Error> {
    match found {
        Ok(p) => Ok(Some(p)),
        Err(e) if named => Err(e),
        Err(_) => Ok(None),
    }
}

fn missing(what: String) -> Error {
    Error::Missing {
        what: format!("finding the weft binary that runs switches and tunnels: {what}"),
        help: "install it on PATH (`cargo install --path WEFT-CHECKOUT/crates/cli`), or build it (`cargo build -p weft-cli` in weft's checkout) and set WEFT_EXE to it or give it with weft::Context::weft_exe".into(),
    }
}

/// `target/PROFILE/weft` for a program in `target/PROFILE/` or
/// `target/PROFILE/deps/` (or `examples/`).
fn in_target_dir(me: &Path) -> Option<PathBuf> {
    let dir = me.parent()?;
    let dir = match dir.file_name()?.to_str()? {
        "deps" | "examples" => dir.parent()?,
        _ => dir,
    };
    let p = dir.join("weft");
    p.is_file().then_some(p)
}

/// The state root a context put in force, if one did.
pub(crate) fn state_dir() -> Option<PathBuf> {
    INSTALLED
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|i| i.state_dir.clone())
}

/// The binary that runs helper processes: the context's, else `WEFT_EXE`,
/// else the running program (the `weft` command itself).
pub(crate) fn helper_exe() -> Result<PathBuf, Error> {
    if let Some(i) = INSTALLED.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
        return match &i.weft_exe {
            Some(p) => Ok(p.clone()),
            // Built since, or the error that says how to provide one.
            None => Context::new().find_weft_exe(),
        };
    }
    if let Some(e) = std::env::var_os("WEFT_EXE") {
        return Ok(PathBuf::from(e));
    }
    std::env::current_exe().map_err(|e| missing(e.to_string()))
}

/// Environment for helper processes: the state directory, so that `weft
/// datapath LAB` and `weft exec LAB ...` find the lab.
pub(crate) fn helper_env() -> Vec<(&'static str, OsString)> {
    vec![(
        "WEFT_STATE_DIR",
        crate::state::state_root().into_os_string(),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_binary_finds_weft_in_its_target_dir() {
        let d = std::env::temp_dir().join(format!("weft-ctx-{}", std::process::id()));
        std::fs::create_dir_all(d.join("debug/deps")).unwrap();
        std::fs::write(d.join("debug/weft"), b"").unwrap();
        assert_eq!(
            in_target_dir(&d.join("debug/deps/mytest-0123")),
            Some(d.join("debug/weft"))
        );
        assert_eq!(
            in_target_dir(&d.join("debug/examples/ex")),
            Some(d.join("debug/weft"))
        );
        assert_eq!(in_target_dir(&d.join("other/deps/t")), None);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn no_binary_found_is_no_error_until_a_helper_needs_one() {
        let none = || Err(missing("no weft binary found".into()));
        assert!(matches!(kept_exe(none(), false), Ok(None)));
        assert!(kept_exe(none(), true).is_err());
        let p = PathBuf::from("/x/weft");
        assert_eq!(kept_exe(Ok(p.clone()), false).unwrap(), Some(p));
    }

    #[test]
    fn an_explicit_binary_that_is_missing_is_refused_with_help() {
        let e = Context::new()
            .weft_exe("/nonexistent/weft")
            .find_weft_exe()
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/weft"), "{e}");
    }
}
