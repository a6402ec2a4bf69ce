//! Which engine a sandbox talks to: its client (`docker` or `podman`), the Docker context that
//! reaches it (local, `ssh://`, `tcp://` with TLS: Docker's own contexts), the OCI runtime its
//! containers use (`runsc` for gVisor), and how many runs it takes at once in a fleet.
//!
//! Built from validated command-line values ([`Engines::parse`], pure and unit-tested); turned
//! into the [`DockerCli`] every docker call of a run goes through, so that `run`, `rm`, `inspect`,
//! `ps` for `gc` and the reaper's `rm` all reach the same engine. Nothing here runs anything.

use thiserror::Error;

use super::docker_cli::{is_plain_word, DockerCli};
pub use crate::sandbox::docker::EngineKind;

/// Environment variable: the engine's client, `docker` (default) or `podman`.
pub const ENGINE_ENV: &str = "SAFE_EXEC_ENGINE";
/// Environment variable: the Docker context(s), as `--context` takes them.
pub const CONTEXT_ENV: &str = "SAFE_EXEC_CONTEXT";
/// Environment variable: the OCI runtime, as `--runtime` takes it.
pub const RUNTIME_ENV: &str = "SAFE_EXEC_RUNTIME";
/// Podman's runtime when none is named: Debian's podman defaults to crun, which fails on cgroup
/// v1 hosts such as ours.
pub const PODMAN_DEFAULT_RUNTIME: &str = "runc";

/// One engine runs go to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Engine {
    /// What reports and logs call it: the context's name, `default` or `podman`.
    pub name: String,
    pub kind: EngineKind,
    /// The Docker context, when not the client's current one.
    pub context: Option<String>,
    /// The OCI runtime, when not the engine's default.
    pub runtime: Option<String>,
    /// Runs at once on this engine in a fleet (`a=4`); `None` leaves it to the caller.
    pub capacity: Option<usize>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            name: "default".to_owned(),
            kind: EngineKind::Docker,
            context: None,
            runtime: None,
            capacity: None,
        }
    }
}

impl Engine {
    /// The client every call to this engine goes through.
    pub fn cli(&self) -> DockerCli {
        match self.kind {
            EngineKind::Docker => DockerCli::from_env().with_globals(
                self.context
                    .iter()
                    .flat_map(|context| ["--context".to_owned(), context.clone()])
                    .collect(),
            ),
            EngineKind::Podman => DockerCli::podman_from_env().with_globals(vec![
                "--runtime".to_owned(),
                self.runtime
                    .clone()
                    .unwrap_or_else(|| PODMAN_DEFAULT_RUNTIME.to_owned()),
            ]),
        }
    }
}

/// Why an engine list was refused. Messages name the fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EngineSpecError {
    #[error("unknown engine `{0}`: use `docker` or `podman`")]
    UnknownKind(String),
    #[error(
        "`{0}` is not a Docker context name (letters, digits, `_.+-`): see `docker context ls`"
    )]
    BadContext(String),
    #[error(
        "`{0}`: the runs at once after `=` must be a whole number from 1 to 256, as in `{1}=4`"
    )]
    BadCapacity(String, String),
    #[error("context `{0}` is named twice in --context")]
    Duplicate(String),
    #[error("`{0}` is not a runtime name (letters, digits, `_.+-`): see `docker info` for the engine's runtimes")]
    BadRuntime(String),
    #[error("--context selects Docker contexts; with --engine podman leave it out (podman runs on this machine)")]
    ContextWithPodman,
}

/// The engines a command runs on, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engines(pub Vec<Engine>);

impl Engines {
    /// From the raw flags: `--engine` (`docker`/`podman`, default docker), `--context`
    /// (`a,b=2,c`; default: the client's current context) and `--runtime`.
    pub fn parse(
        kind: Option<&str>,
        contexts: Option<&str>,
        runtime: Option<&str>,
    ) -> Result<Engines, EngineSpecError> {
        let kind = match kind.map(str::trim).filter(|kind| !kind.is_empty()) {
            None | Some("docker") => EngineKind::Docker,
            Some("podman") => EngineKind::Podman,
            Some(other) => return Err(EngineSpecError::UnknownKind(other.to_owned())),
        };
        let runtime = match runtime.map(str::trim).filter(|name| !name.is_empty()) {
            Some(name) if is_name(name) => Some(name.to_owned()),
            Some(name) => return Err(EngineSpecError::BadRuntime(name.to_owned())),
            None => None,
        };
        let entries: Vec<&str> = contexts
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .collect();
        if kind == EngineKind::Podman {
            if !entries.is_empty() {
                return Err(EngineSpecError::ContextWithPodman);
            }
            return Ok(Engines(vec![Engine {
                name: "podman".to_owned(),
                kind,
                runtime,
                ..Engine::default()
            }]));
        }
        if entries.is_empty() {
            return Ok(Engines(vec![Engine {
                runtime,
                ..Engine::default()
            }]));
        }
        let mut engines: Vec<Engine> = Vec::with_capacity(entries.len());
        for entry in entries {
            let (name, capacity) = match entry.split_once('=') {
                Some((name, count)) => {
                    let capacity = count
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|count| (1..=256).contains(count))
                        .ok_or_else(|| {
                            EngineSpecError::BadCapacity(entry.to_owned(), name.to_owned())
                        })?;
                    (name.trim(), Some(capacity))
                }
                None => (entry, None),
            };
            if !is_name(name) {
                return Err(EngineSpecError::BadContext(name.to_owned()));
            }
            if engines.iter().any(|engine| engine.name == name) {
                return Err(EngineSpecError::Duplicate(name.to_owned()));
            }
            engines.push(Engine {
                name: name.to_owned(),
                kind,
                context: Some(name.to_owned()),
                runtime: runtime.clone(),
                capacity,
            });
        }
        Ok(Engines(engines))
    }

    /// Every engine's runs at once: its own `=N`, else `each`.
    pub fn capacities(&self, each: usize) -> Vec<usize> {
        self.0
            .iter()
            .map(|engine| engine.capacity.unwrap_or(each).max(1))
            .collect()
    }
}

/// Docker's context names (`^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$`), also used for runtime names.
fn is_name(name: &str) -> bool {
    name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && is_plain_word(name)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_given_is_the_default_docker_engine() {
        let engines = Engines::parse(None, None, None).unwrap();
        assert_eq!(engines.0, [Engine::default()]);
        assert!(engines.0[0].cli().globals().is_empty());
        assert_eq!(engines.capacities(3), [3]);
    }

    #[test]
    fn contexts_with_and_without_their_own_capacity() {
        let engines = Engines::parse(Some("docker"), Some("a=4, b ,c=2"), Some("runsc")).unwrap();
        let names: Vec<&str> = engines
            .0
            .iter()
            .map(|engine| engine.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(engines.capacities(3), [4, 3, 2]);
        assert!(engines
            .0
            .iter()
            .all(|engine| engine.runtime.as_deref() == Some("runsc")));
        assert_eq!(engines.0[1].cli().globals(), ["--context", "b"]);
    }

    #[test]
    fn bad_lists_are_refused_with_the_fix() {
        for (kind, contexts, runtime) in [
            (Some("lxc"), None, None),
            (None, Some("a=0"), None),
            (None, Some("a=x"), None),
            (None, Some("a=257"), None),
            (None, Some("a,a"), None),
            (None, Some("$(rm -rf /)"), None),
            (None, Some("-H"), None),
            (None, None, Some("run sc")),
            (Some("podman"), Some("a"), None),
        ] {
            let error = Engines::parse(kind, contexts, runtime).unwrap_err();
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn podman_runs_on_runc_unless_told() {
        let engines = Engines::parse(Some("podman"), None, None).unwrap();
        assert_eq!(engines.0[0].name, "podman");
        assert_eq!(engines.0[0].cli().globals(), ["--runtime", "runc"]);
        let gvisor = Engines::parse(Some("podman"), Some(""), Some("runsc")).unwrap();
        assert_eq!(gvisor.0[0].cli().globals(), ["--runtime", "runsc"]);
    }
}
