//! Escape attempts (docs/threats.md E2–E12), checked from inside the container.

use std::time::Duration;

use safe_exec::report::Status;

use crate::common::{under_gvisor, Session};

fn run_ok(session: &Session, code: &str) -> String {
    let (report, exit) = session.run_json(code, &[]);
    assert_eq!((report.status, exit), (Status::Ok, 0), "{report:?}");
    report.stdout
}

#[test]
fn e2_root_is_read_only_with_no_host_mounts_or_sockets() {
    let session = Session::new();
    let mountinfo = run_ok(&session, "print(open('/proc/self/mountinfo').read())");
    let mounts: Vec<(&str, &str, &str)> = mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let dash = fields.iter().position(|field| *field == "-")?;
            Some((fields[4], fields[5], fields[dash + 1]))
        })
        .collect();
    let root = mounts
        .iter()
        .find(|(point, _, _)| *point == "/")
        .expect("a root mount");
    assert!(
        root.1.split(',').any(|option| option == "ro"),
        "root is not read-only: {root:?}"
    );
    for (point, options, fstype) in &mounts {
        let writable = options.split(',').any(|option| option == "rw");
        // Under gVisor the image's root (read-only, checked above) is served over 9P by the
        // runtime's gofer, not an overlay mount.
        let gvisor_root = under_gvisor() && *point == "/" && *fstype == "9p";
        let allowed = gvisor_root
            || matches!(
                *fstype,
                "proc" | "tmpfs" | "sysfs" | "cgroup" | "devpts" | "mqueue" | "overlay"
            );
        // The only bind mounts are Docker's generated /etc files and the engine's init binary
        // (for --init); none may be writable.
        if !allowed {
            let expected = [
                "/etc/hosts",
                "/etc/hostname",
                "/etc/resolv.conf",
                "/sbin/docker-init",
                "/usr/sbin/docker-init",
            ];
            assert!(
                expected.contains(point) && !writable,
                "unexpected mount {point} ({fstype}, {options})"
            );
        }
        assert!(
            !point.contains("docker.sock"),
            "docker socket mounted at {point}"
        );
    }
    let tmp = mounts
        .iter()
        .find(|(point, _, _)| *point == "/tmp")
        .expect("a /tmp mount");
    assert_eq!(tmp.2, "tmpfs");
    // gVisor's mountinfo shows only rw/ro and noexec. Its nosuid and nodev would have nothing
    // to act on there: the program can neither make a device (no CAP_MKNOD) nor gain from a
    // setuid file (no-new-privileges); noexec is what matters, and is checked.
    let options: &[&str] = if under_gvisor() {
        &["noexec"]
    } else {
        &["nosuid", "nodev", "noexec"]
    };
    for option in options {
        assert!(tmp.1.contains(option), "/tmp lacks {option}: {tmp:?}");
    }
    if under_gvisor() {
        let exec = run_ok(
            &session,
            "import os, shutil\nshutil.copy('/bin/true', '/tmp/t')\nos.chmod('/tmp/t', 0o755)\ntry:\n    os.execv('/tmp/t', ['t'])\nexcept PermissionError:\n    print('refused')",
        );
        assert_eq!(exec, "refused\n");
    }
    session.assert_clean();
}

#[test]
fn e3_shadow_is_unreadable() {
    let session = Session::new();
    let out = run_ok(&session, "try:\n    open('/etc/shadow').read()\n    print('read')\nexcept PermissionError:\n    print('PermissionError')");
    assert_eq!(out, "PermissionError\n");
    session.assert_clean();
}

#[test]
fn e4_the_docker_socket_is_not_there() {
    let session = Session::new();
    let out = run_ok(
        &session,
        "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect('/var/run/docker.sock')\n    print('connected')\nexcept FileNotFoundError:\n    print('absent')",
    );
    assert_eq!(out, "absent\n");
    session.assert_clean();
}

#[test]
fn e6_no_root_no_capabilities_no_new_privileges_seccomp_on() {
    let session = Session::new();
    let out = run_ok(
        &session,
        "import os\nprint('uid', os.getuid(), os.geteuid(), os.getgid())\n\
         try:\n    os.setuid(0)\n    print('setuid worked')\nexcept PermissionError:\n    print('setuid PermissionError')\n\
         for line in open('/proc/self/status'):\n    if line.split(':')[0] in ('CapEff', 'CapPrm', 'CapBnd', 'NoNewPrivs', 'Seccomp'):\n        print(' '.join(line.split()))",
    );
    // A uid of its own, from the programs' range: neither root nor the launcher's.
    let ids: Vec<u32> = out
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("uid "))
        .map(|ids| ids.split(' ').map(|id| id.parse().unwrap()).collect())
        .unwrap_or_default();
    assert_eq!(ids.len(), 3, "{out}");
    assert!(ids.iter().all(|id| *id == ids[0]), "{out}");
    assert!(safe_exec::sandbox::PROGRAM_UIDS.contains(&ids[0]), "{out}");
    assert!(out.contains("setuid PermissionError\n"), "{out}");
    assert!(out.contains("CapEff: 0000000000000000\n"), "{out}");
    assert!(out.contains("CapPrm: 0000000000000000\n"), "{out}");
    // The bounding set keeps the launcher's SETGID and SETUID (bits 6 and 7): dropping them needs
    // a third capability, and with no-new-privileges, no setuid file and a non-root uid no
    // execve can bring them back.
    assert!(out.contains("CapBnd: 00000000000000c0\n"), "{out}");
    if under_gvisor() {
        // gVisor's /proc/self/status has no NoNewPrivs line, and Docker's seccomp filter guards
        // the runtime's own host threads, not the program: the program's system calls go to
        // gVisor's user-space kernel (`Seccomp: 0` inside). no-new-privileges is asked of that
        // kernel directly.
        let asked = run_ok(
            &session,
            "import ctypes\nprint(ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))",
        );
        assert_eq!(asked, "1\n", "PR_GET_NO_NEW_PRIVS");
    } else {
        assert!(out.contains("NoNewPrivs: 1\n"), "{out}");
        assert!(out.contains("Seccomp: 2\n"), "{out}");
    }
    session.assert_clean();
}

#[test]
fn e11_raw_sockets_are_refused() {
    let session = Session::new();
    let out = run_ok(
        &session,
        "import socket\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n    print('raw socket')\nexcept PermissionError:\n    print('PermissionError')",
    );
    assert_eq!(out, "PermissionError\n");
    session.assert_clean();
}

#[test]
fn e12_no_network_metadata_or_dns_each_failing_fast() {
    let session = Session::new();
    let code = r#"
import socket, time
for label, action in [
    ('metadata', lambda: socket.create_connection(('169.254.169.254', 80), timeout=5)),
    ('dns', lambda: socket.getaddrinfo('example.com', 80)),
    ('outbound', lambda: socket.create_connection(('1.1.1.1', 53), timeout=5)),
]:
    started = time.monotonic()
    try:
        action()
        print(label, 'connected')
    except OSError as error:
        print(label, type(error).__name__, time.monotonic() - started < 1.0)
print(sorted(name for _, name in socket.if_nameindex()))
"#;
    let out = run_ok(&session, code);
    assert!(out.contains("metadata OSError True\n"), "{out}");
    assert!(out.contains("dns gaierror True\n"), "{out}");
    assert!(out.contains("outbound OSError True\n"), "{out}");
    assert!(out.ends_with("['lo']\n"), "only loopback exists: {out}");
    session.assert_clean();
}

#[test]
fn seed_network_and_write_examples_fail_inside_the_sandbox() {
    let session = Session::new();
    let network = session
        .safe_exec()
        .args(["run", "examples/network.py"])
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&network.stdout),
        String::from_utf8_lossy(&network.stderr)
    );
    assert!(!all.contains("connected to"), "{all}");
    let write = session
        .safe_exec()
        .args(["run", "examples/write_file.py"])
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&write.stdout),
        String::from_utf8_lossy(&write.stderr)
    );
    // gVisor checks the program's permission before the read-only mount: refused either way.
    let refused = if under_gvisor() {
        "Permission denied"
    } else {
        "Read-only file system"
    };
    assert!(all.contains(refused), "{all}");
    if under_gvisor() {
        // gVisor's teardown is slower than runc's: the documented bound.
        session.assert_clean();
    } else {
        session.assert_clean_within(Duration::from_secs(1));
    }
}

#[test]
fn only_our_environment_reaches_the_program() {
    let session = Session::new();
    let (report, _) = session.run_json("import os\nprint(sorted(os.environ))", &[]);
    assert_eq!(
        report.stdout,
        "['HOME', 'LANG', 'MPLBACKEND', 'MPLCONFIGDIR', 'PATH', 'PYTHONDONTWRITEBYTECODE', 'PYTHONUNBUFFERED', 'TMPDIR']\n"
    );
    let leaked = session
        .safe_exec()
        .env("SECRET_TOKEN", "hunter2")
        .args([
            "run",
            "-c",
            "import os; print(os.environ.get('SECRET_TOKEN'))",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&leaked.stdout), "None\n");
    session.assert_clean();
}
