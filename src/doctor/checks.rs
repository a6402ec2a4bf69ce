//! The rows of `safe-exec doctor` and the checks that need only the docker CLI: the client, the
//! engine, its cgroups, runtimes and security options, and the runner image. Each check turns
//! what a docker call printed into a row by a pure function (unit-tested on docker's own output);
//! the calls themselves are in [`engine_checks`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::image::{self, context, Labels};
use crate::runner::docker_cli::{classify_failure, CallOutput};
use crate::runner::{DockerCli, EngineError};
use crate::sandbox::DS_IMAGE;

/// The stable `id` of every row, for scripts reading `--json`.
pub mod ids {
    pub const CLIENT: &str = "client";
    pub const ENGINE: &str = "engine";
    pub const CGROUPS: &str = "cgroups";
    pub const RUNTIMES: &str = "runtimes";
    pub const SECURITY: &str = "security";
    pub const IMAGE: &str = "image";
    pub const PROBE: &str = "probe";
    pub const PROBE_UID: &str = "probe.uid";
    pub const PROBE_LAUNCHER: &str = "probe.launcher";
    pub const PROBE_CAPABILITIES: &str = "probe.capabilities";
    pub const PROBE_NO_NEW_PRIVS: &str = "probe.no_new_privs";
    pub const PROBE_SECCOMP: &str = "probe.seccomp";
    pub const PROBE_NETWORK: &str = "probe.network";
    pub const PROBE_READ_ONLY_ROOT: &str = "probe.read_only_root";
    pub const PROBE_TMP: &str = "probe.tmp";
    pub const PROBE_MEMORY: &str = "probe.memory";
    pub const PROBE_PIDS: &str = "probe.pids";
    pub const PROBE_CPU_QUOTA: &str = "probe.cpu_quota";
    pub const PROBE_CPU_ACCOUNTING: &str = "probe.cpu_accounting";
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// All is well.
    Ok,
    /// Something is wrong; `fix` says what to do.
    Fail,
    /// Not checked: it needs something that failed above (`detail` says what).
    Skipped,
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Stable identifier ([`ids`]).
    pub id: String,
    /// The docker context the row is about; `null` for the machine itself (the client).
    pub engine: Option<String>,
    pub status: CheckStatus,
    /// What was checked, for people.
    pub what: String,
    /// What was found. Text from outside (engine messages, the probe) is sanitised.
    pub detail: String,
    /// What to do about a failure; `null` unless `status` is `fail`.
    pub fix: Option<String>,
}

impl Check {
    fn new(
        id: &str,
        status: CheckStatus,
        what: &str,
        detail: String,
        fix: Option<String>,
    ) -> Check {
        Check {
            id: id.to_owned(),
            engine: None,
            status,
            what: what.to_owned(),
            detail: crate::sanitize::text(&detail).into_owned(),
            fix,
        }
    }

    pub fn ok(id: &str, what: &str, detail: impl Into<String>) -> Check {
        Check::new(id, CheckStatus::Ok, what, detail.into(), None)
    }

    pub fn fail(id: &str, what: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check::new(id, CheckStatus::Fail, what, detail.into(), Some(fix.into()))
    }

    pub fn skipped(id: &str, what: &str, because: impl Into<String>) -> Check {
        Check::new(id, CheckStatus::Skipped, what, because.into(), None)
    }

    /// This row, about `engine`.
    pub fn on(mut self, engine: Option<&str>) -> Check {
        self.engine = engine.map(str::to_owned);
        self
    }
}

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

const START_ENGINE: &str = "start dockerd: `sudo bash scripts/setup.sh` in a safe-exec checkout \
                            installs and starts it, elsewhere `sudo systemctl start docker`; for \
                            another engine check DOCKER_HOST and `docker context ls`";

/// What the engine checks found, besides their rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineState {
    /// The docker context the client used, as it reports it.
    pub context: Option<String>,
    /// The engine answered.
    pub reachable: bool,
    /// The runner image is there (current or not).
    pub image_present: bool,
}

/// Every check of one engine that needs no container, in order: client, engine, cgroups,
/// runtimes, security options, runner image.
pub fn engine_checks(docker: &DockerCli, image: &str) -> (Vec<Check>, EngineState) {
    let version_args = ["version", "--format", "{{json .}}"].map(String::from);
    let (client, engine, context) = versions(&docker.call_unchecked(&version_args, CALL_TIMEOUT));
    let reachable = engine.status == CheckStatus::Ok;
    let mut rows = vec![client, engine];
    let mut state = EngineState {
        context,
        reachable,
        image_present: false,
    };
    if !reachable {
        let because = "needs the engine";
        rows.push(Check::skipped(ids::CGROUPS, "cgroups", because));
        rows.push(Check::skipped(ids::RUNTIMES, "runtimes", because));
        rows.push(Check::skipped(ids::SECURITY, "security options", because));
        rows.push(Check::skipped(ids::IMAGE, "runner image", because));
        return (rows, state);
    }
    let info_args = ["info", "--format", "{{json .}}"].map(String::from);
    rows.extend(info(&docker.call(&info_args, CALL_TIMEOUT, None)));
    let labels = image::labels(docker, image);
    state.image_present = matches!(labels, Ok(Some(_)));
    rows.push(image_check(image, &labels));
    (rows, state)
}

fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |value, key| value.get(key))
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
}

/// The client and engine rows from `docker version --format '{{json .}}'` (which prints the
/// client's half even when the engine is unreachable), and the context the client used.
pub fn versions(call: &Result<CallOutput, EngineError>) -> (Check, Check, Option<String>) {
    let client_what = "docker client";
    let engine_what = "engine";
    let output = match call {
        Ok(output) => output,
        Err(EngineError::CliMissing { program }) => {
            return (
                Check::fail(
                    ids::CLIENT,
                    client_what,
                    format!("`{program}` not found"),
                    "install Docker: `sudo bash scripts/setup.sh` on Debian or Ubuntu, your \
                     distribution's docker package elsewhere; or point SAFE_EXEC_DOCKER at a \
                     docker client",
                ),
                Check::skipped(ids::ENGINE, engine_what, "needs the docker client"),
                None,
            )
        }
        Err(error @ EngineError::Timeout { .. }) => {
            return (
                Check::skipped(ids::CLIENT, client_what, "no answer: see the engine"),
                Check::fail(
                    ids::ENGINE,
                    engine_what,
                    error.to_string(),
                    "the engine may be hung or overloaded: check `docker info`; restart the \
                     engine if it does not recover",
                ),
                None,
            )
        }
        Err(error) => {
            return (
                Check::fail(
                    ids::CLIENT,
                    client_what,
                    error.to_string(),
                    "check the docker client with `docker version`",
                ),
                Check::skipped(ids::ENGINE, engine_what, "needs the docker client"),
                None,
            )
        }
    };
    let json: Value = output
        .stdout
        .lines()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or(Value::Null);
    let context = text(&json, &["Client", "Context"]).map(str::to_owned);
    let client = match text(&json, &["Client", "Version"]) {
        Some(version) => Check::ok(
            ids::CLIENT,
            client_what,
            format!(
                "{version} (API {}, context {})",
                text(&json, &["Client", "ApiVersion"]).unwrap_or("unknown"),
                context.as_deref().unwrap_or("unknown"),
            ),
        ),
        None => Check::fail(
            ids::CLIENT,
            client_what,
            "the docker client did not report its version",
            "check the docker client with `docker version` (SAFE_EXEC_DOCKER names another client)",
        ),
    };
    let server_version = text(&json, &["Server", "Version"]);
    let engine = match server_version {
        Some(version) if output.status.success() => {
            let host = std::env::var("DOCKER_HOST")
                .ok()
                .filter(|host| !host.is_empty())
                .map_or(String::new(), |host| format!(", DOCKER_HOST={host}"));
            Check::ok(
                ids::ENGINE,
                engine_what,
                format!(
                    "{version} (API {}, {}{host})",
                    text(&json, &["Server", "ApiVersion"]).unwrap_or("unknown"),
                    text(&json, &["Server", "Os"])
                        .zip(text(&json, &["Server", "Arch"]))
                        .map_or("unknown platform".to_owned(), |(os, arch)| format!(
                            "{os}/{arch}"
                        )),
                ),
            )
        }
        _ => {
            let (detail, fix) = match classify_failure("version", &output.stderr, None) {
                EngineError::PermissionDenied { detail } => (
                    format!("permission denied: {detail}"),
                    "run safe-exec as root, or add your user to the `docker` group".to_owned(),
                ),
                EngineError::Unreachable { host, detail } => (
                    format!("cannot reach the engine{host}: {detail}"),
                    START_ENGINE.to_owned(),
                ),
                other => (
                    other.to_string(),
                    format!("check the engine with `docker version`; {START_ENGINE}"),
                ),
            };
            Check::fail(ids::ENGINE, engine_what, detail, fix)
        }
    };
    (client, engine, context)
}

/// The cgroups, runtimes and security-options rows from `docker info --format '{{json .}}'`.
pub fn info(call: &Result<CallOutput, EngineError>) -> [Check; 3] {
    let json: Value = match call {
        Ok(output) => serde_json::from_str(output.stdout.trim()).unwrap_or(Value::Null),
        Err(error) => {
            let fail = |id, what| {
                Check::fail(
                    id,
                    what,
                    error.to_string(),
                    "check the engine with `docker info`",
                )
            };
            return [
                fail(ids::CGROUPS, "cgroups"),
                fail(ids::RUNTIMES, "runtimes"),
                fail(ids::SECURITY, "security options"),
            ];
        }
    };
    [cgroups(&json), runtimes(&json), security(&json)]
}

fn cgroups(json: &Value) -> Check {
    let what = "cgroups";
    let version = text(json, &["CgroupVersion"]).unwrap_or("unknown");
    let driver = text(json, &["CgroupDriver"]).unwrap_or("unknown");
    let enforced = |key: &str| json.get(key).and_then(Value::as_bool) != Some(false);
    let missing: Vec<&str> = [
        ("MemoryLimit", "memory"),
        ("PidsLimit", "pids"),
        ("CpuCfsQuota", "cpu quota"),
    ]
    .into_iter()
    .filter(|(key, _)| !enforced(key))
    .map(|(_, name)| name)
    .collect();
    let swap = if enforced("SwapLimit") {
        ""
    } else {
        "; no swap limit (see the memory row)"
    };
    let detail = format!("v{version}, {driver} driver{swap}");
    if missing.is_empty() {
        Check::ok(ids::CGROUPS, what, detail)
    } else {
        Check::fail(
            ids::CGROUPS,
            what,
            format!("{detail}; the engine cannot limit: {}", missing.join(", ")),
            "enable the memory, pids and cpu cgroup controllers in the kernel (for memory: \
             `cgroup_enable=memory swapaccount=1`), then restart the engine",
        )
    }
}

fn runtimes(json: &Value) -> Check {
    let what = "runtimes";
    let default = text(json, &["DefaultRuntime"]);
    let mut names: Vec<String> = json
        .get("Runtimes")
        .and_then(Value::as_object)
        .map(|runtimes| runtimes.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    let listed = names
        .iter()
        .map(|name| {
            if Some(name.as_str()) == default {
                format!("{name} (default)")
            } else {
                name.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    match default {
        Some(default) if names.iter().any(|name| name == default) => {
            Check::ok(ids::RUNTIMES, what, listed)
        }
        _ => Check::fail(
            ids::RUNTIMES,
            what,
            format!(
                "default runtime {} is not among: {listed}",
                default.unwrap_or("unknown")
            ),
            "check `docker info` (Runtimes, Default Runtime) and the engine's daemon.json",
        ),
    }
}

fn security(json: &Value) -> Check {
    let what = "security options";
    let options: Vec<String> = json
        .get("SecurityOptions")
        .and_then(Value::as_array)
        .map(|options| {
            options
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let detail = if options.is_empty() {
        "none".to_owned()
    } else {
        options.join("; ")
    };
    if options
        .iter()
        .any(|option| option.starts_with("name=seccomp"))
    {
        Check::ok(ids::SECURITY, what, detail)
    } else {
        Check::fail(
            ids::SECURITY,
            what,
            detail,
            "the engine runs containers without seccomp: use an engine built with seccomp and \
             keep its default profile (no `--seccomp-profile unconfined` in its settings)",
        )
    }
}

/// The runner image row: there, and built from a context this binary carries (the runner's, or
/// the data-science image's on top of it).
pub fn image_check(image: &str, labels: &Result<Option<Labels>, EngineError>) -> Check {
    let what = "runner image";
    let build = image::build_command(image);
    let expected = if image == DS_IMAGE {
        context::ds_hash()
    } else {
        context::hash()
    };
    match labels {
        Ok(Some(labels)) if labels.is_ours() => {
            let label = labels.context.as_deref().unwrap_or_default();
            let kind = if label == context::ds_hash() {
                "the data-science image built from this binary's contexts"
            } else {
                "built from this binary's launcher"
            };
            Check::ok(
                ids::IMAGE,
                what,
                format!(
                    "{image} {kind} (context {}, base {})",
                    &label[..12],
                    labels.base.as_deref().unwrap_or("unknown")
                ),
            )
        }
        Ok(Some(labels)) => Check::fail(
            ids::IMAGE,
            what,
            match &labels.context {
                Some(other) => format!(
                    "{image} was built from another launcher (context {}, this binary's is {})",
                    other.get(..12).unwrap_or(other),
                    &expected[..12]
                ),
                None => format!(
                    "{image} has no {} label: not built by safe-exec",
                    image::CONTEXT_LABEL
                ),
            },
            format!("rebuild it from this binary's launcher: run `{build}`"),
        ),
        Ok(None) => Check::fail(
            ids::IMAGE,
            what,
            format!("{image} not found"),
            format!("run `{build}`"),
        ),
        Err(error) => Check::fail(
            ids::IMAGE,
            what,
            error.to_string(),
            "check the engine with `docker info`",
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn output(code: i32, stdout: &str, stderr: &str) -> Result<CallOutput, EngineError> {
        Ok(CallOutput {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: stdout.to_owned(),
            stderr: stderr.to_owned(),
        })
    }

    const VERSION: &str = r#"{"Client":{"Version":"28.2.2","ApiVersion":"1.41","Context":"default"},"Server":{"Version":"20.10.24+dfsg1","ApiVersion":"1.41","Os":"linux","Arch":"amd64"}}"#;

    #[test]
    fn a_reachable_engine_gives_two_ok_rows() {
        let (client, engine, context) = versions(&output(0, VERSION, ""));
        assert_eq!(client.status, CheckStatus::Ok, "{client:?}");
        assert!(client.detail.contains("28.2.2") && client.detail.contains("context default"));
        assert_eq!(engine.status, CheckStatus::Ok, "{engine:?}");
        assert!(engine
            .detail
            .starts_with("20.10.24+dfsg1 (API 1.41, linux/amd64"));
        assert_eq!(context.as_deref(), Some("default"));
    }

    #[test]
    fn an_unreachable_engine_fails_with_the_fix_to_start_it() {
        let stdout = r#"{"Client":{"Version":"28.2.2","ApiVersion":"1.50","Context":"default"},"Server":null}"#;
        let stderr = "Cannot connect to the Docker daemon at unix:///nonexistent.sock. Is the docker daemon running?\n";
        let (client, engine, _) = versions(&output(1, stdout, stderr));
        assert_eq!(client.status, CheckStatus::Ok);
        assert_eq!(engine.status, CheckStatus::Fail);
        assert!(engine.fix.as_deref().unwrap().contains("scripts/setup.sh"));
        let denied = "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock";
        let (_, engine, _) = versions(&output(1, stdout, denied));
        assert!(engine.fix.as_deref().unwrap().contains("`docker` group"));
    }

    #[test]
    fn a_missing_client_fails_and_skips_the_engine() {
        let missing = Err(EngineError::CliMissing {
            program: "docker".into(),
        });
        let (client, engine, _) = versions(&missing);
        assert_eq!(client.status, CheckStatus::Fail);
        assert!(client.fix.as_deref().unwrap().contains("SAFE_EXEC_DOCKER"));
        assert_eq!(engine.status, CheckStatus::Skipped);
    }

    #[test]
    fn engine_text_is_sanitised() {
        let stdout = "{\"Client\":{\"Version\":\"1\\u001b[31m\"},\"Server\":null}";
        let (client, _, _) = versions(&output(1, stdout, "boom\r\n::error::x"));
        assert!(!client.detail.contains('\x1b'), "{client:?}");
    }

    const INFO: &str = r#"{"CgroupVersion":"1","CgroupDriver":"cgroupfs","MemoryLimit":true,"SwapLimit":true,"PidsLimit":true,"CpuCfsQuota":true,
        "Runtimes":{"runc":{"path":"runc"},"runsc":{"path":"/usr/bin/runsc"}},"DefaultRuntime":"runc",
        "SecurityOptions":["name=seccomp,profile=default"]}"#;

    #[test]
    fn info_rows_on_a_healthy_engine() {
        let [cgroups, runtimes, security] = info(&output(0, INFO, ""));
        assert_eq!(cgroups.status, CheckStatus::Ok);
        assert_eq!(cgroups.detail, "v1, cgroupfs driver");
        assert_eq!(runtimes.status, CheckStatus::Ok);
        assert_eq!(runtimes.detail, "runc (default), runsc");
        assert_eq!(security.status, CheckStatus::Ok);
    }

    #[test]
    fn info_rows_fail_on_missing_controllers_or_seccomp() {
        let weak = INFO
            .replace("\"PidsLimit\":true", "\"PidsLimit\":false")
            .replace("name=seccomp,profile=default", "name=apparmor");
        let [cgroups, _, security] = info(&output(0, &weak, ""));
        assert_eq!(cgroups.status, CheckStatus::Fail);
        assert!(cgroups.detail.contains("cannot limit: pids"), "{cgroups:?}");
        assert_eq!(security.status, CheckStatus::Fail);
        let no_swap = INFO.replace("\"SwapLimit\":true", "\"SwapLimit\":false");
        let [cgroups, _, _] = info(&output(0, &no_swap, ""));
        assert_eq!(cgroups.status, CheckStatus::Ok, "the memory row decides");
        assert!(cgroups.detail.contains("no swap limit"));
    }

    #[test]
    fn the_image_row_compares_the_context_label() {
        let current = Labels {
            context: Some(context::hash().to_owned()),
            base: Some("safe-exec-base:bookworm".into()),
        };
        let row = image_check("safe-exec-python:3.11", &Ok(Some(current)));
        assert_eq!(row.status, CheckStatus::Ok, "{row:?}");
        let stale = Labels {
            context: Some(
                "631d70bcef104f6403bc2fffb524bf64f2c83b7d9c8ccd8910a24bce6b2e1569".into(),
            ),
            base: None,
        };
        let row = image_check("safe-exec-python:3.11", &Ok(Some(stale)));
        assert_eq!(row.status, CheckStatus::Fail);
        assert!(row.detail.contains("631d70bcef10"), "{row:?}");
        assert_eq!(
            row.fix.as_deref(),
            Some("rebuild it from this binary's launcher: run `safe-exec image build`")
        );
        let row = image_check("nope:1", &Ok(None));
        assert_eq!(row.detail, "nope:1 not found");
        assert_eq!(
            row.fix.as_deref(),
            Some("run `safe-exec image build --tag nope:1`")
        );
        let ds = Labels {
            context: Some(context::ds_hash().to_owned()),
            base: Some("safe-exec-python:3.11".into()),
        };
        let row = image_check(DS_IMAGE, &Ok(Some(ds)));
        assert_eq!(row.status, CheckStatus::Ok, "{row:?}");
        assert!(row.detail.contains("data-science"), "{row:?}");
        let row = image_check(DS_IMAGE, &Ok(None));
        assert_eq!(row.fix.as_deref(), Some("run `safe-exec image build --ds`"));
        let row = image_check("x:1", &Ok(Some(Labels::default())));
        assert!(row.detail.contains("no safe-exec.context label"), "{row:?}");
    }
}
