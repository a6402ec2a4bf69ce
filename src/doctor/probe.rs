//! The probe: a small Python program (`probe.py`) run through [`Sandbox::run`] exactly as a
//! user's program is — same supervisor, same hardening flags, same launcher — that reports what it
//! sees from the inside. [`evaluate`] compares those findings with what safe-exec asked for; it is
//! a pure function, tested as a table of findings.
//!
//! What the probe says comes from inside a container: it is parsed into typed fields, and every
//! piece of it that reaches a row goes through the sanitiser (in [`Check`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::checks::{ids, Check};
use crate::limits::{LimitOverrides, Limits};
use crate::report::Status;
use crate::runner::{CancelToken, Job, ProgramStdin, RunIo, Sandbox};
use crate::sandbox::docker::TMPFS_BYTES;
use crate::sandbox::{LAUNCHER_UID, PROGRAM_UIDS};
use crate::source::Program;

/// The probe program.
pub const PROBE: &str = include_str!("probe.py");

const MIB: u64 = 1024 * 1024;

/// The limits the probe runs under, chosen to differ from the defaults so that finding them in
/// the container's cgroups shows they were applied, not inherited.
pub fn limits() -> Limits {
    Limits::default().with(&LimitOverrides {
        timeout: Some(Duration::from_secs(5)),
        wall_timeout: Some(Duration::from_secs(15)),
        memory_bytes: Some(96 * MIB),
        cpus: Some(1.0),
        pids: Some(48),
        max_code_chars: Some(PROBE.chars().count()),
        max_output_bytes: Some(64 * 1024),
    })
}

/// What the probe printed: raw facts, judged by [`evaluate`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Findings {
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
    pub groups: Vec<u32>,
    /// Fields of the program's `/proc/self/status`: CapEff, CapPrm, CapAmb, CapBnd, NoNewPrivs,
    /// Seccomp.
    pub status: HashMap<String, Option<String>>,
    /// Fields of the launcher's (PID 1) `/proc/1/status`: Uid, Gid, CapEff.
    pub launcher: HashMap<String, Option<String>>,
    /// Network interfaces, from `/proc/net/dev`.
    pub interfaces: Vec<String>,
    /// `ok` or the errno name of creating a file in `/`, `/var/tmp` and `/tmp`.
    pub root_write: String,
    pub var_tmp_write: String,
    pub tmp_write: String,
    /// `ok` or the errno name of exec'ing a script written to `/tmp`.
    pub tmp_exec: String,
    /// Mount options of `/` and `/tmp`.
    pub mounts: HashMap<String, Vec<String>>,
    pub cgroup: CgroupFindings,
    /// The host's swap as `/proc/meminfo` shows it (not namespaced), in KiB.
    pub swap_total_kb: Option<u64>,
}

/// The container's cgroup files, as read inside it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CgroupFindings {
    pub version: u8,
    /// v1 `memory.limit_in_bytes`, v2 `memory.max`.
    pub memory_max: Option<String>,
    /// v1 `memory.memsw.limit_in_bytes` (memory plus swap), v2 `memory.swap.max` (swap alone).
    pub swap_max: Option<String>,
    pub pids_max: Option<String>,
    /// `quota period` in microseconds (v1 `cpu.cfs_quota_us cpu.cfs_period_us`, v2 `cpu.max`).
    pub cpu_max: Option<String>,
    /// The first of the launcher's CPU counters that could be read, and its first line.
    pub cpu_counter: Option<String>,
    pub cpu_counter_value: Option<String>,
}

/// Run the probe on `sandbox` and turn what it found into rows. Every row is there whatever
/// happens: when the probe did not report, the rows after the first are skipped.
pub fn run(sandbox: &Sandbox, cancel: &CancelToken) -> Vec<Check> {
    let limits = limits();
    let program = match Program::from_text(PROBE, limits.max_code_chars) {
        Ok(program) => program,
        Err(error) => return not_run(format!("the probe program was refused: {error}"), None),
    };
    let job = Job {
        program,
        files: Vec::new(),
        stdin: ProgramStdin::Empty,
        limits,
    };
    let started = Instant::now();
    let outcome = sandbox.run(job, RunIo::capture(), cancel);
    let took = started.elapsed();
    if outcome.status != Status::Ok {
        let error = outcome.error.clone().unwrap_or_default();
        let stderr = String::from_utf8_lossy(&outcome.stderr.bytes);
        let last = stderr.lines().rev().find(|line| !line.trim().is_empty());
        let detail = match last {
            Some(line) => format!(
                "{} ({error}; the probe said: {line})",
                outcome.status.as_str()
            ),
            None => format!("{} ({error})", outcome.status.as_str()),
        };
        return not_run(detail, Some(outcome.status));
    }
    let findings: Findings = match serde_json::from_slice(&outcome.stdout.bytes) {
        Ok(findings) => findings,
        Err(error) => {
            return not_run(
                format!("the probe's report could not be read ({error})"),
                None,
            )
        }
    };
    let mut rows = vec![Check::ok(
        ids::PROBE,
        "probe container",
        format!(
            "ran through the supervisor in {:.2} s ({} ms of CPU)",
            took.as_secs_f64(),
            outcome.cpu_time.unwrap_or_default().as_millis()
        ),
    )];
    rows.extend(evaluate(&findings, outcome.cpu_time, &limits));
    rows
}

/// Every probe row: the probe's own failed (with `detail`), the others skipped.
fn not_run(detail: String, status: Option<Status>) -> Vec<Check> {
    let fix = match status {
        Some(Status::Interrupted) => "run `safe-exec doctor` again".to_owned(),
        _ => "rebuild the runner image with `safe-exec image build`, then run `safe-exec doctor` \
              again; if it still fails, `safe-exec run -c 'print(1)'` shows the same error"
            .to_owned(),
    };
    let mut rows = vec![Check::fail(ids::PROBE, "probe container", detail, fix)];
    rows.extend(
        PROBE_ROWS
            .iter()
            .map(|(id, what)| Check::skipped(id, what, "the probe did not report")),
    );
    rows
}

/// The rows [`evaluate`] gives, in order: `(id, what)`.
pub const PROBE_ROWS: &[(&str, &str)] = &[
    (ids::PROBE_UID, "program uid"),
    (ids::PROBE_LAUNCHER, "launcher uid"),
    (ids::PROBE_CAPABILITIES, "capabilities"),
    (ids::PROBE_NO_NEW_PRIVS, "no_new_privs"),
    (ids::PROBE_SECCOMP, "seccomp"),
    (ids::PROBE_NETWORK, "network"),
    (ids::PROBE_READ_ONLY_ROOT, "read-only root"),
    (ids::PROBE_TMP, "/tmp"),
    (ids::PROBE_MEMORY, "memory limit"),
    (ids::PROBE_PIDS, "pids limit"),
    (ids::PROBE_CPU_QUOTA, "cpu quota"),
    (ids::PROBE_CPU_ACCOUNTING, "cpu accounting"),
];

/// The probe rows for `findings`, a run that reported `cpu_time`, under `limits`.
pub fn evaluate(findings: &Findings, cpu_time: Option<Duration>, limits: &Limits) -> Vec<Check> {
    vec![
        program_uid(findings),
        launcher_uid(findings),
        capabilities(findings),
        no_new_privs(findings),
        seccomp(findings),
        network(findings),
        read_only_root(findings),
        tmp(findings),
        memory(findings, limits),
        pids(findings, limits),
        cpu_quota(findings, limits),
        cpu_accounting(findings, cpu_time),
    ]
}

const REBUILD: &str = "rebuild the runner image with `safe-exec image build` (an image from \
                       another launcher may not drop privileges this way)";

fn field<'a>(fields: &'a HashMap<String, Option<String>>, name: &str) -> &'a str {
    fields
        .get(name)
        .and_then(|value| value.as_deref())
        .unwrap_or("unknown")
}

fn is_zero_mask(value: &str) -> bool {
    !value.is_empty() && value.chars().all(|c| c == '0')
}

fn program_uid(f: &Findings) -> Check {
    let (id, what) = PROBE_ROWS[0];
    let own = f.uid == f.euid && f.gid == f.egid && f.uid == f.gid && f.groups.is_empty();
    let in_range = PROGRAM_UIDS.contains(&f.uid) && f.uid != LAUNCHER_UID;
    let detail = format!(
        "uid {} gid {}{} (programs get one of their own from {}–{}; the launcher's is {LAUNCHER_UID})",
        f.uid,
        f.gid,
        if f.groups.is_empty() {
            ", no supplementary groups".to_owned()
        } else {
            format!(", groups {:?}", f.groups)
        },
        PROGRAM_UIDS.start,
        PROGRAM_UIDS.end - 1
    );
    if own && in_range {
        Check::ok(id, what, detail)
    } else {
        Check::fail(id, what, detail, REBUILD)
    }
}

fn launcher_uid(f: &Findings) -> Check {
    let (id, what) = PROBE_ROWS[1];
    let uids = field(&f.launcher, "Uid");
    let cap_eff = field(&f.launcher, "CapEff");
    let dropped = uids
        .split_whitespace()
        .map(|uid| uid.parse::<u32>().ok())
        .collect::<Vec<_>>();
    let all_launcher = dropped.len() == 4 && dropped.iter().all(|uid| *uid == Some(LAUNCHER_UID));
    let detail = format!("PID 1 runs as uid {uids} with CapEff {cap_eff}");
    if all_launcher && is_zero_mask(cap_eff) {
        Check::ok(
            id,
            what,
            format!("PID 1 dropped to uid {LAUNCHER_UID} with no capabilities"),
        )
    } else {
        Check::fail(id, what, detail, REBUILD)
    }
}

fn capabilities(f: &Findings) -> Check {
    let (id, what) = PROBE_ROWS[2];
    let names = ["CapEff", "CapPrm", "CapAmb"];
    let detail = names
        .iter()
        .map(|name| format!("{name} {}", field(&f.status, name)))
        .collect::<Vec<_>>()
        .join(", ");
    if names
        .iter()
        .all(|name| is_zero_mask(field(&f.status, name)))
    {
        Check::ok(id, what, detail)
    } else {
        Check::fail(
            id,
            what,
            detail,
            "the program holds capabilities: check that nothing adds `--privileged` or \
             `--cap-add` to every container (an engine default or plugin), then rebuild the image \
             with `safe-exec image build`",
        )
    }
}

fn no_new_privs(f: &Findings) -> Check {
    let (id, what) = PROBE_ROWS[3];
    let value = field(&f.status, "NoNewPrivs");
    if value == "1" {
        Check::ok(id, what, "NoNewPrivs 1")
    } else {
        Check::fail(
            id,
            what,
            format!("NoNewPrivs {value}"),
            "the engine ignored `--security-opt no-new-privileges`: use an engine that supports it \
             (Docker 1.11 or later; see `docker info`)",
        )
    }
}

fn seccomp(f: &Findings) -> Check {
    let (id, what) = PROBE_ROWS[4];
    let value = field(&f.status, "Seccomp");
    if value == "2" {
        Check::ok(id, what, "Seccomp 2 (a filter is applied)")
    } else {
        Check::fail(
            id,
            what,
            format!("Seccomp {value} (2 means filtered)"),
            "no seccomp filter: run the engine with seccomp and its default profile (`docker info` \
             should list `name=seccomp,profile=default` under Security Options)",
        )
    }
}

fn network(f: &Findings) -> Check {
    let (id, what) = PROBE_ROWS[5];
    let detail = format!("interfaces: {}", f.interfaces.join(", "));
    if f.interfaces == ["lo"] {
        Check::ok(id, what, "only lo (--network none)")
    } else {
        Check::fail(
            id,
            what,
            detail,
            "the engine ignored `--network none`: check the engine and its network plugins \
             (`docker info`)",
        )
    }
}

fn mount_options(f: &Findings, point: &str) -> Vec<String> {
    f.mounts.get(point).cloned().unwrap_or_default()
}

fn read_only_root(f: &Findings) -> Check {
    let (id, what) = PROBE_ROWS[6];
    let options = mount_options(f, "/");
    let mounted_ro = options.iter().any(|option| option == "ro");
    // /var/tmp is world-writable in the image: only a read-only mount stops the write.
    let refused = f.root_write != "ok" && f.var_tmp_write != "ok";
    let detail = format!(
        "/ mounted {}; creating a file in / gives {}, in /var/tmp {}",
        if mounted_ro { "ro" } else { "rw" },
        f.root_write,
        f.var_tmp_write
    );
    if mounted_ro && refused {
        Check::ok(id, what, detail)
    } else {
        Check::fail(
            id,
            what,
            detail,
            "the engine ignored `--read-only`: check the engine and its storage driver \
             (`docker info`)",
        )
    }
}

fn tmp(f: &Findings) -> Check {
    let (id, what) = PROBE_ROWS[7];
    let options = mount_options(f, "/tmp");
    let noexec = options.iter().any(|option| option == "noexec");
    let detail = format!(
        "writing a file gives {}, exec'ing it {} (mounted {})",
        f.tmp_write,
        f.tmp_exec,
        if options.is_empty() {
            "nowhere".to_owned()
        } else {
            options.join(",")
        }
    );
    if f.tmp_write == "ok" && noexec && f.tmp_exec != "ok" {
        Check::ok(
            id,
            what,
            format!(
                "writable ({} MiB tmpfs), noexec: exec fails with {}",
                TMPFS_BYTES / MIB,
                f.tmp_exec
            ),
        )
    } else {
        Check::fail(
            id,
            what,
            detail,
            "the engine did not mount /tmp as asked (`--tmpfs /tmp:rw,noexec,...`): check the \
             engine (`docker info`)",
        )
    }
}

/// A cgroup file's number (`max` is no limit).
fn number(value: Option<&str>) -> Option<u64> {
    value.and_then(|value| value.trim().parse().ok())
}

fn mib(bytes: u64) -> String {
    if bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

fn memory(f: &Findings, limits: &Limits) -> Check {
    let (id, what) = PROBE_ROWS[8];
    let wanted = limits.memory_bytes;
    let cgroup = &f.cgroup;
    let memory = number(cgroup.memory_max.as_deref());
    // v1 gives memory plus swap (wanted: the memory limit); v2 swap alone (wanted: 0).
    let (swap_wanted, swap_name) = if cgroup.version == 1 {
        (wanted, "memory+swap")
    } else {
        (0, "swap")
    };
    let swap = number(cgroup.swap_max.as_deref());
    let no_swap_on_host = f.swap_total_kb == Some(0);
    let swap_ok = swap == Some(swap_wanted) || (cgroup.swap_max.is_none() && no_swap_on_host);
    let show = |value: Option<u64>, raw: &Option<String>| match (value, raw) {
        (Some(bytes), _) => mib(bytes),
        (None, Some(raw)) => raw.clone(),
        (None, None) => "not limited (no such cgroup file)".to_owned(),
    };
    let detail = format!(
        "memory {}, {swap_name} {}{} (cgroup v{}; asked for {})",
        show(memory, &cgroup.memory_max),
        show(swap, &cgroup.swap_max),
        if cgroup.swap_max.is_none() && no_swap_on_host {
            " but the host has no swap"
        } else {
            ""
        },
        cgroup.version,
        mib(wanted)
    );
    if memory == Some(wanted) && swap_ok {
        Check::ok(id, what, detail)
    } else {
        Check::fail(
            id,
            what,
            detail,
            "the engine does not enforce the memory limit (or lets swap add to it): enable the \
             memory cgroup controller and swap accounting (kernel parameters \
             `cgroup_enable=memory swapaccount=1`), then restart the engine",
        )
    }
}

fn pids(f: &Findings, limits: &Limits) -> Check {
    let (id, what) = PROBE_ROWS[9];
    let found = f
        .cgroup
        .pids_max
        .as_deref()
        .unwrap_or("no such cgroup file");
    let detail = format!("pids.max {found} (asked for {})", limits.pids);
    if number(f.cgroup.pids_max.as_deref()) == Some(u64::from(limits.pids)) {
        Check::ok(id, what, detail)
    } else {
        Check::fail(
            id,
            what,
            detail,
            "the engine does not enforce `--pids-limit`: enable the pids cgroup controller, then \
             restart the engine",
        )
    }
}

fn cpu_quota(f: &Findings, limits: &Limits) -> Check {
    let (id, what) = PROBE_ROWS[10];
    let raw = f.cgroup.cpu_max.as_deref().unwrap_or("no such cgroup file");
    let mut fields = raw
        .split_whitespace()
        .map(|field| field.parse::<f64>().ok());
    let cores = match (fields.next().flatten(), fields.next().flatten()) {
        (Some(quota), Some(period)) if quota > 0.0 && period > 0.0 => Some(quota / period),
        _ => None,
    };
    let detail = format!(
        "quota/period {raw} µs{} (asked for {} CPU)",
        cores.map_or(String::new(), |cores| format!(" = {cores} CPU")),
        limits.cpus
    );
    if cores.is_some_and(|cores| (cores - limits.cpus).abs() < 0.01) {
        Check::ok(id, what, detail)
    } else {
        Check::fail(
            id,
            what,
            detail,
            "the engine does not enforce `--cpus`: enable the cpu cgroup controller (CFS quota), \
             then restart the engine",
        )
    }
}

fn cpu_accounting(f: &Findings, cpu_time: Option<Duration>) -> Check {
    let (id, what) = PROBE_ROWS[11];
    let counter = f.cgroup.cpu_counter.as_deref();
    let value = f.cgroup.cpu_counter_value.as_deref().unwrap_or("");
    let readable = counter.is_some()
        && (value.trim().parse::<u64>().is_ok() || value.starts_with("usage_usec "));
    let reported = cpu_time.filter(|time| !time.is_zero());
    let detail = format!(
        "{}; the launcher reported {} of CPU for the probe",
        counter.map_or("no CPU counter readable".to_owned(), |path| format!(
            "{path} readable"
        )),
        reported.map_or("none".to_owned(), |time| format!("{} ms", time.as_millis()))
    );
    if readable && reported.is_some() {
        Check::ok(id, what, detail)
    } else {
        Check::fail(
            id,
            what,
            detail,
            "the launcher cannot read the container's CPU time (cpuacct.usage or cpu.stat), so \
             time limits fall back to the wall clock: enable the cpuacct cgroup controller",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::checks::CheckStatus;

    /// What the probe finds in a healthy container on cgroup v1 (as on this project's machines).
    fn healthy() -> Findings {
        let strings = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), Some((*value).to_owned())))
                .collect()
        };
        Findings {
            uid: 1_234_567,
            euid: 1_234_567,
            gid: 1_234_567,
            egid: 1_234_567,
            groups: vec![],
            status: strings(&[
                ("CapEff", "0000000000000000"),
                ("CapPrm", "0000000000000000"),
                ("CapAmb", "0000000000000000"),
                ("CapBnd", "00000000000000c0"),
                ("NoNewPrivs", "1"),
                ("Seccomp", "2"),
            ]),
            launcher: strings(&[
                ("Uid", "10001\t10001\t10001\t10001"),
                ("Gid", "10001\t10001\t10001\t10001"),
                ("CapEff", "0000000000000000"),
            ]),
            interfaces: vec!["lo".into()],
            root_write: "EROFS".into(),
            var_tmp_write: "EROFS".into(),
            tmp_write: "ok".into(),
            tmp_exec: "EACCES".into(),
            mounts: [
                ("/".to_owned(), vec!["ro".to_owned(), "relatime".to_owned()]),
                (
                    "/tmp".to_owned(),
                    ["rw", "nosuid", "nodev", "noexec", "relatime"]
                        .map(String::from)
                        .to_vec(),
                ),
            ]
            .into_iter()
            .collect(),
            cgroup: CgroupFindings {
                version: 1,
                memory_max: Some((96 * MIB).to_string()),
                swap_max: Some((96 * MIB).to_string()),
                pids_max: Some("48".into()),
                cpu_max: Some("100000 100000".into()),
                cpu_counter: Some("/sys/fs/cgroup/cpuacct/cpuacct.usage".into()),
                cpu_counter_value: Some("48088936".into()),
            },
            swap_total_kb: Some(0),
        }
    }

    fn statuses(
        findings: &Findings,
        cpu_time: Option<Duration>,
    ) -> Vec<(&'static str, CheckStatus)> {
        let rows = evaluate(findings, cpu_time, &limits());
        assert_eq!(rows.len(), PROBE_ROWS.len());
        rows.iter()
            .zip(PROBE_ROWS)
            .map(|(row, (id, _))| {
                assert_eq!(row.id, *id);
                if row.status == CheckStatus::Fail {
                    assert!(row.fix.is_some(), "{row:?} has no fix");
                }
                (*id, row.status)
            })
            .collect()
    }

    /// The ids of the rows that failed.
    fn failing(findings: &Findings, cpu_time: Option<Duration>) -> Vec<&'static str> {
        statuses(findings, cpu_time)
            .into_iter()
            .filter(|(_, status)| *status == CheckStatus::Fail)
            .map(|(id, _)| id)
            .collect()
    }

    const CPU: Option<Duration> = Some(Duration::from_millis(34));

    #[test]
    fn a_healthy_sandbox_passes_every_row() {
        assert_eq!(failing(&healthy(), CPU), Vec::<&str>::new());
        let v2 = Findings {
            cgroup: CgroupFindings {
                version: 2,
                swap_max: Some("0".into()),
                cpu_counter: Some("/sys/fs/cgroup/cpu.stat".into()),
                cpu_counter_value: Some("usage_usec 48088".into()),
                ..healthy().cgroup
            },
            ..healthy()
        };
        assert_eq!(failing(&v2, CPU), Vec::<&str>::new());
    }

    /// Each broken finding fails exactly its own row.
    #[test]
    fn each_weakness_fails_its_row() {
        let mut cases: Vec<(Findings, Option<Duration>, &str)> = Vec::new();
        let mut case = |change: &dyn Fn(&mut Findings), id: &'static str| {
            let mut findings = healthy();
            change(&mut findings);
            cases.push((findings, CPU, id));
        };
        case(&|f| f.uid = LAUNCHER_UID, ids::PROBE_UID);
        case(&|f| f.uid = 0, ids::PROBE_UID);
        case(&|f| f.groups = vec![0], ids::PROBE_UID);
        case(&|f| f.egid = 0, ids::PROBE_UID);
        case(
            &|f| {
                f.launcher.insert("Uid".into(), Some("0\t0\t0\t0".into()));
            },
            ids::PROBE_LAUNCHER,
        );
        case(
            &|f| {
                f.launcher
                    .insert("CapEff".into(), Some("00000000000000c0".into()));
            },
            ids::PROBE_LAUNCHER,
        );
        case(
            &|f| {
                f.status
                    .insert("CapEff".into(), Some("00000000000000c0".into()));
            },
            ids::PROBE_CAPABILITIES,
        );
        case(
            &|f| {
                f.status.insert("CapAmb".into(), None);
            },
            ids::PROBE_CAPABILITIES,
        );
        case(
            &|f| {
                f.status.insert("NoNewPrivs".into(), Some("0".into()));
            },
            ids::PROBE_NO_NEW_PRIVS,
        );
        case(
            &|f| {
                f.status.insert("Seccomp".into(), Some("0".into()));
            },
            ids::PROBE_SECCOMP,
        );
        case(
            &|f| f.interfaces = vec!["eth0".into(), "lo".into()],
            ids::PROBE_NETWORK,
        );
        case(
            &|f| {
                f.mounts.insert("/".into(), vec!["rw".into()]);
            },
            ids::PROBE_READ_ONLY_ROOT,
        );
        case(
            &|f| f.var_tmp_write = "ok".into(),
            ids::PROBE_READ_ONLY_ROOT,
        );
        case(&|f| f.tmp_exec = "ok".into(), ids::PROBE_TMP);
        case(&|f| f.tmp_write = "EROFS".into(), ids::PROBE_TMP);
        case(
            &|f| {
                f.mounts.remove("/tmp");
            },
            ids::PROBE_TMP,
        );
        case(
            &|f| f.cgroup.memory_max = Some("9223372036854771712".into()),
            ids::PROBE_MEMORY,
        );
        case(
            &|f| f.cgroup.swap_max = Some("9223372036854771712".into()),
            ids::PROBE_MEMORY,
        );
        // No swap accounting is a weakness only when the host has swap to give.
        case(
            &|f| {
                f.cgroup.swap_max = None;
                f.swap_total_kb = Some(1024);
            },
            ids::PROBE_MEMORY,
        );
        case(&|f| f.cgroup.pids_max = Some("max".into()), ids::PROBE_PIDS);
        case(&|f| f.cgroup.pids_max = None, ids::PROBE_PIDS);
        case(
            &|f| f.cgroup.cpu_max = Some("-1 100000".into()),
            ids::PROBE_CPU_QUOTA,
        );
        case(
            &|f| f.cgroup.cpu_max = Some("max 100000".into()),
            ids::PROBE_CPU_QUOTA,
        );
        case(&|f| f.cgroup.cpu_counter = None, ids::PROBE_CPU_ACCOUNTING);
        for (findings, cpu_time, id) in cases {
            assert_eq!(failing(&findings, cpu_time), [id], "{findings:#?}");
        }
        assert_eq!(
            failing(&healthy(), Some(Duration::ZERO)),
            [ids::PROBE_CPU_ACCOUNTING]
        );
        assert_eq!(failing(&healthy(), None), [ids::PROBE_CPU_ACCOUNTING]);
    }

    #[test]
    fn no_swap_accounting_on_a_host_without_swap_is_fine() {
        let mut findings = healthy();
        findings.cgroup.swap_max = None;
        assert!(failing(&findings, CPU).is_empty());
    }

    #[test]
    fn the_probe_s_own_output_parses() {
        let json = r#"{"uid": 1500000, "euid": 1500000, "gid": 1500000, "egid": 1500000, "groups": [],
            "status": {"CapEff": "0000000000000000", "CapPrm": null, "CapAmb": "0", "CapBnd": "c0", "NoNewPrivs": "1", "Seccomp": "2"},
            "launcher": {"Uid": "10001\t10001\t10001\t10001", "Gid": null, "CapEff": null},
            "interfaces": ["lo"], "root_write": "EROFS", "var_tmp_write": "EROFS", "tmp_write": "ok",
            "tmp_exec": "EACCES", "mounts": {"/": ["ro"], "/tmp": ["rw", "noexec"]},
            "cgroup": {"version": 1, "memory_max": "100663296", "swap_max": null, "pids_max": "48",
                       "cpu_max": "100000 100000", "cpu_counter": null, "cpu_counter_value": null},
            "swap_total_kb": 0}"#;
        let findings: Findings = serde_json::from_str(json).unwrap();
        assert_eq!(findings.uid, 1_500_000);
        assert_eq!(field(&findings.status, "CapPrm"), "unknown");
    }

    #[test]
    fn the_probe_fits_its_own_limits() {
        let limits = limits();
        assert!(Program::from_text(PROBE, limits.max_code_chars).is_ok());
        assert_ne!(limits.memory_bytes, Limits::default().memory_bytes);
        assert_ne!(limits.pids, Limits::default().pids);
    }

    #[test]
    fn the_probe_reads_the_launcher_s_cpu_counters() {
        // The same files, in the same order, as runner_image/launch.py's CGROUP_CPU.
        let launcher = include_str!("../../runner_image/launch.py");
        let paths = [
            "/sys/fs/cgroup/cpuacct/cpuacct.usage",
            "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage",
            "/sys/fs/cgroup/cpu.stat",
        ];
        let order = |text: &str| {
            paths
                .iter()
                .map(|path| text.find(path).unwrap_or_else(|| panic!("{path} missing")))
                .collect::<Vec<_>>()
        };
        for text in [launcher, PROBE] {
            let found = order(text);
            assert!(found.windows(2).all(|pair| pair[0] < pair[1]), "{found:?}");
        }
    }
}
