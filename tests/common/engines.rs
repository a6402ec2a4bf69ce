//! Extra Docker engines for tests: a `dockerd` of the test's own, beside the machine's.
//!
//! Each [`TestEngine`] has its own data root, exec root (with its own containerd), pid file,
//! cgroup parent and unix socket, a bridge of its own (never the host's docker0) and no iptables
//! rules, and listens on a loopback TCP port with TLS certificates the test makes with the
//! openssl CLI (client certificates required). The runner image is copied in (`docker save | docker load`), and a Docker context
//! names it in a client configuration directory of the test's own ([`Contexts`]), so nothing in
//! the machine's engine, its data, its sockets, its cgroups or the user's contexts is touched.
//! Dropping it (also on panic) stops the daemon, then removes its mounts, data and cgroups.
//!
//! Needs root, `dockerd` and `openssl`; `scripts/test.sh` installs what is missing.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a test engine may take to come up (a loaded 2-core machine: seconds).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long it may take to stop once asked (it stops its containers first).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Docker client configuration of one test: its contexts, and the certificates they use.
pub struct Contexts {
    dir: tempfile::TempDir,
}

impl Contexts {
    pub fn new() -> Contexts {
        let dir = tempfile::Builder::new()
            .prefix("se-ctx-")
            .tempdir()
            .expect("a temporary directory");
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        Contexts { dir }
    }

    /// For `DOCKER_CONFIG`: safe-exec and docker find the test's contexts here.
    pub fn config_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `docker` with this configuration.
    pub fn docker(&self) -> Command {
        let mut command = Command::new("docker");
        command.env("DOCKER_CONFIG", self.config_dir());
        command
    }
}

/// A running `dockerd` of the test's own; stopped and removed when dropped.
pub struct TestEngine {
    /// The Docker context that reaches it over TCP with TLS.
    pub context: String,
    root: PathBuf,
    port: u16,
    args: Vec<String>,
    cgroup_parent: String,
    /// A bridge of its own (see [`own_bridge`]).
    bridge: String,
    daemon: std::sync::Mutex<Option<std::process::Child>>,
}

/// Make a bridge interface for one test engine. A dockerd started with `--bridge=none` removes
/// the host's `docker0` on its way up (the machine's own engine would lose its default network:
/// `docker build` with a `RUN` step fails until it is made again), so each test engine gets a
/// bridge of its own, on a /24 of its own, and removes it when it is done.
fn own_bridge(number: u32) -> String {
    let name = format!("sebr{}-{number}", std::process::id() % 100_000);
    let subnet = 200 + number % 50;
    let _ = Command::new("ip").args(["link", "del", &name]).output();
    for args in [
        vec!["link", "add", &name, "type", "bridge"],
        vec![
            "addr",
            "add",
            &format!("10.251.{subnet}.1/24"),
            "dev",
            &name,
        ],
        vec!["link", "set", &name, "up"],
    ] {
        run(
            Command::new("ip").args(&args),
            "ip (a test engine's bridge)",
        );
    }
    name
}

fn run(command: &mut Command, what: &str) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("{what}: cannot start: {error}"));
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn openssl(dir: &Path, args: &[&str]) {
    run(
        Command::new("openssl").current_dir(dir).args(args),
        &format!("openssl {}", args[0]),
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`.
fn make_certificates(dir: &Path) {
    openssl(dir, &["genrsa", "-out", "ca-key.pem", "2048"]);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca-key.pem",
            "-days",
            "2",
            "-subj",
            "/CN=safe-exec test CA",
            "-out",
            "ca.pem",
        ],
    );
    for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
        let key = format!("{name}-key.pem");
        let csr = format!("{name}.csr");
        let cert = format!("{name}.pem");
        let ext = format!("{name}.ext");
        std::fs::write(
            dir.join(&ext),
            format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"),
        )
        .unwrap();
        openssl(dir, &["genrsa", "-out", &key, "2048"]);
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                &key,
                "-subj",
                &format!("/CN={name}"),
                "-out",
                &csr,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &cert,
            ],
        );
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

impl TestEngine {
    /// Start an engine, load `image` into it and name it as a context in `contexts`.
    pub fn start(contexts: &Contexts, image: &str) -> TestEngine {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.subsec_micros())
        );
        let context = format!("se-test-{tag}");
        // Short: the unix sockets under it have a 108-byte limit.
        let root = PathBuf::from(format!("/var/tmp/se-eng-{tag}"));
        std::fs::create_dir_all(root.join("certs")).unwrap();
        make_certificates(&root.join("certs"));
        std::fs::write(root.join("daemon.json"), "{}").unwrap();
        let port = free_port();
        let certs = root.join("certs");
        let cgroup_parent = format!("/safe-exec-test-{tag}");
        let bridge = own_bridge(COUNTER.load(Ordering::Relaxed));
        let args: Vec<String> = vec![
            format!("--config-file={}", root.join("daemon.json").display()),
            format!("--data-root={}", root.join("data").display()),
            format!("--exec-root={}", root.join("x").display()),
            format!("--pidfile={}", root.join("dockerd.pid").display()),
            format!("--host=unix://{}", root.join("x/docker.sock").display()),
            format!("--host=tcp://127.0.0.1:{port}"),
            "--tlsverify".to_owned(),
            format!("--tlscacert={}", certs.join("ca.pem").display()),
            format!("--tlscert={}", certs.join("server.pem").display()),
            format!("--tlskey={}", certs.join("server-key.pem").display()),
            format!("--cgroup-parent={cgroup_parent}"),
            format!("--bridge={bridge}"),
            "--iptables=false".to_owned(),
            "--ip-forward=false".to_owned(),
            "--ip-masq=false".to_owned(),
            "--userland-proxy=false".to_owned(),
            format!("--containerd-namespace=se-{tag}"),
            format!("--containerd-plugins-namespace=se-{tag}-plugins"),
            "--log-level=warn".to_owned(),
        ];
        let engine = TestEngine {
            context,
            root,
            port,
            args,
            cgroup_parent,
            bridge,
            daemon: std::sync::Mutex::new(None),
        };
        engine.launch();
        engine.wait_up();
        // The runner image, from the machine's engine.
        let load = format!(
            "docker save {image} | docker -H unix://{} load -q",
            engine.socket().display()
        );
        run(
            Command::new("sh").args(["-c", &load]),
            "docker save | docker load",
        );
        let host = format!(
            "host=tcp://127.0.0.1:{},ca={},cert={},key={}",
            engine.port,
            certs.join("ca.pem").display(),
            certs.join("client.pem").display(),
            certs.join("client-key.pem").display()
        );
        run(
            contexts
                .docker()
                .args(["context", "create", &engine.context, "--docker", &host]),
            "docker context create",
        );
        // Reached through its context, over TLS, as safe-exec will.
        run(
            contexts
                .docker()
                .args(["--context", &engine.context, "image", "inspect", image]),
            "docker --context image inspect",
        );
        engine
    }

    fn socket(&self) -> PathBuf {
        self.root.join("x/docker.sock")
    }

    /// `docker` talking to this engine over its unix socket.
    pub fn docker(&self) -> Command {
        let mut command = Command::new("docker");
        command
            .arg("-H")
            .arg(format!("unix://{}", self.socket().display()));
        command
    }

    fn launch(&self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("dockerd.log"))
            .unwrap();
        let child = Command::new("dockerd")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("dockerd starts (run scripts/setup.sh)");
        *self.daemon.lock().unwrap() = Some(child);
    }

    /// Send `signal` to the daemon and wait (at most [`STOP_TIMEOUT`]) for it to end.
    fn end_daemon(&self, signal: i32) {
        let Some(mut child) = self.daemon.lock().unwrap().take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) on the dockerd this test started (our child, not yet reaped).
            unsafe {
                libc::kill(pid, signal);
            }
        }
        let until = Instant::now() + STOP_TIMEOUT;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Is it answering?
    pub fn is_up(&self) -> bool {
        self.docker()
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Wait until it answers. A daemon that gave up on the way (its containerd, restoring the
    /// tasks of a killed predecessor on a loaded machine, may miss dockerd's 10 s start-up
    /// deadline) is started again, a few times.
    fn wait_up(&self) {
        let until = Instant::now() + START_TIMEOUT;
        let mut launches = 1;
        while !self.is_up() {
            let exited = self
                .daemon
                .lock()
                .unwrap()
                .as_mut()
                .is_some_and(|child| !matches!(child.try_wait(), Ok(None)));
            assert!(
                Instant::now() < until && !(exited && launches == 3),
                "test engine did not come up: {}",
                std::fs::read_to_string(self.root.join("dockerd.log")).unwrap_or_default()
            );
            if exited {
                let _ = self
                    .daemon
                    .lock()
                    .unwrap()
                    .take()
                    .map(|mut child| child.wait());
                self.launch();
                launches += 1;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILL the daemon and its containerd, as a crash would; the containers' shims live on
    /// (they are stopped when the daemon starts again, live-restore being off).
    pub fn kill(&self) {
        self.end_daemon(libc::SIGKILL);
        let exec_root = self.root.join("x").display().to_string();
        let containerd: Vec<i32> = processes_mentioning(&exec_root)
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmdline| cmdline.starts_with(b"containerd\0"))
            })
            .collect();
        for pid in &containerd {
            // SAFETY: kill(2) on the containerd our own daemon started (its path is unique).
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        let until = Instant::now() + STOP_TIMEOUT;
        while containerd.iter().any(|pid| is_alive(*pid)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(self.root.join("dockerd.pid"));
    }

    /// Start the daemon again after [`TestEngine::kill`] and wait until it answers.
    pub fn restart(&self) {
        self.launch();
        self.wait_up();
    }

    /// A process, running in one of this engine's containers (found through their cgroups),
    /// that sees the file `marker` (a path inside its container: a program that has started can
    /// leave one in its working directory).
    pub fn process(&self, marker: &str) -> Option<i32> {
        let parent =
            Path::new("/sys/fs/cgroup/pids").join(self.cgroup_parent.trim_start_matches('/'));
        let containers = std::fs::read_dir(parent).ok()?;
        containers.flatten().find_map(|container| {
            std::fs::read_to_string(container.path().join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|pid| pid.parse::<i32>().ok())
                .find(|pid| runs(*pid, marker))
        })
    }

    /// Names of containers on this engine carrying `session`'s label.
    pub fn containers(&self, session: &str) -> Vec<String> {
        self.list(session, "-aq")
    }

    /// Those of them that are running.
    pub fn running(&self, session: &str) -> Vec<String> {
        self.list(session, "-q")
    }

    fn list(&self, session: &str, flags: &str) -> Vec<String> {
        let output = self
            .docker()
            .args(["ps", flags, "--filter"])
            .arg(format!("label=safe-exec.session={session}"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "docker ps on the test engine failed"
        );
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    /// Stop the daemon, then remove everything it made.
    fn stop_and_remove(&mut self) {
        self.end_daemon(libc::SIGTERM);
        // Whatever our daemon started that outlived it (containerd, shims of a killed daemon's
        // containers) names our exec root on its command line.
        let exec_root = self.root.join("x").display().to_string();
        for pid in processes_mentioning(&exec_root) {
            // SAFETY: kill(2) on a process started by our own daemon (its path is unique).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        unmount_under(&self.root);
        let _ = std::fs::remove_dir_all(&self.root);
        remove_cgroups(&self.cgroup_parent);
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

impl Drop for TestEngine {
    fn drop(&mut self) {
        self.stop_and_remove();
    }
}

/// Is `pid` alive, seeing the file `marker` in its container? (Not its command line: the
/// program's interpreter starts before the program is known, so that names no program.)
pub fn runs(pid: i32, marker: &str) -> bool {
    is_alive(pid) && Path::new(&format!("/proc/{pid}/root{marker}")).exists()
}

/// Is `pid` a process that has not ended (a zombie has)?
fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

fn processes_mentioning(text: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(text))
        })
        .collect()
}

/// Unmount everything mounted under `root`, deepest first.
fn unmount_under(root: &Path) {
    let prefix = root.display().to_string();
    let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4).map(str::to_owned))
        .filter(|point| point.starts_with(&prefix))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in points {
        let _ = Command::new("umount")
            .args(["-l", &point])
            .stderr(Stdio::null())
            .status();
    }
}

/// Remove the cgroup directories our daemon's containers were put in (empty once they are gone).
fn remove_cgroups(parent: &str) {
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for controller in controllers.flatten() {
        let dir = controller.path().join(parent.trim_start_matches('/'));
        if let Ok(children) = std::fs::read_dir(&dir) {
            for child in children.flatten() {
                if child.path().is_dir() {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}
