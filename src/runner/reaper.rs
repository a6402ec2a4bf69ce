//! The reaper: a tiny process of ours that outlives us, so our containers are removed even when
//! safe-exec is killed with SIGKILL.
//!
//! [`ContainerGuard`](super::registry::ContainerGuard) covers every exit path we run code on; a
//! SIGKILL runs none of them. So the [registry](super::registry) of live containers starts a
//! `/bin/sh` in its own process group whose standard input is a pipe from us. We write `+NAME` before each
//! `docker create` and `-NAME` once the container is removed. When our end of the pipe closes —
//! a normal exit, a crash, SIGKILL — the shell reads end-of-file and runs one
//! `docker rm --force` for the names still listed, then exits. On a normal exit the list is empty
//! and it exits at once without calling docker.
//!
//! Why a shell and not our own binary: re-executing ourselves would depend on the binary still
//! being where it was (a rebuilt `target/` moves it) and, under `cargo test`, on a test harness that
//! knows no subcommands. `sh`, `read` and parameter expansion are everywhere we run.
//!
//! Inside the container the launcher's own limits end a run without us; the reaper makes sure the
//! stopped container is also removed, and removes a run's container at once when we die mid-run.
//! It is also how `safe-exec run` answers without waiting for removal: the container of a run that
//! has reported is removed by the reaper the moment we exit. This module knows nothing of which
//! containers are live; the registry tells it.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};

use super::docker_cli::DockerCli;

/// The reaper's program. `$1` is the docker client, `$2` the pauses (seconds) between its later
/// looks for containers whose create was cut short, or whose engine did not answer; `$3` the
/// client's global options (`--context NAME`); `$4` its remove command (`rm --force --volumes`, and
/// podman's `--time 0`). Container names are `[A-Za-z0-9-]` and the options
/// plain words, so space-separated lists need no quoting; `set -f` keeps the shell from globbing
/// them anyway.
const SCRIPT: &str = r#"
set -f
trap '' HUP INT TERM
docker=$1
pauses=$2
globals=$3
rm=$4
names=' '
uncertain=''
while IFS= read -r line; do
    name=${line#?}
    case $line in
        [+?]*) case $names in
                *" $name "*) ;;
                *) names="$names$name " ;;
            esac
            case $line in
                [?]*) uncertain="$uncertain $name" ;;
            esac ;;
        -*) case $names in
                *" $name "*) names="${names%% "$name" *} ${names#* "$name" }" ;;
            esac ;;
    esac
done
remove() {
    if command -v timeout >/dev/null 2>&1; then
        timeout 60 "$docker" $globals $rm "$@"
    else
        "$docker" $globals $rm "$@"
    fi
}
set -- $names
[ $# -eq 0 ] && exit 0
# An engine that is down (restarting, unreachable) is asked again after each pause; a name it
# does not know counts as removed.
gone() { ! grep -v 'No such container' "$1" | grep -q .; }
log=$(mktemp 2>/dev/null || echo /dev/null)
if remove "$@" 2>"$log" || gone "$log"; then
    set --
fi
# A create that was cut short may still land in the engine after that: look again.
for pause in $pauses; do
    [ $# -eq 0 ] && [ -z "$uncertain" ] && break
    sleep $pause
    if remove "$@" $uncertain 2>"$log" || gone "$log"; then
        set --
    fi
done
[ "$log" = /dev/null ] || rm -f "$log"
"#;

/// After our exit, a cut-short create's container, or one whose engine did not answer, is looked
/// for again after these pauses (about a minute in all: an engine restart fits).
const LATE_CREATE_PAUSES: &str = "1 2 4 8 15 30";

/// A running reaper and the pipe that feeds it.
pub struct Reaper {
    child: Child,
    stdin: ChildStdin,
}

impl Reaper {
    /// Start a reaper that removes containers with `docker` (None if no shell could be started:
    /// runs go on without one; the launcher's own limits and `safe-exec gc` remain).
    pub fn start(docker: &DockerCli) -> Option<Reaper> {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(SCRIPT)
            .arg("safe-exec-reaper")
            .arg(docker.program())
            .arg(LATE_CREATE_PAUSES)
            .arg(docker.globals().join(" "))
            .arg(docker.remove_args().join(" "))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C or a kill of our group must not take it with us.
            .process_group(0);
        let mut child = command.spawn().ok()?;
        let stdin = child.stdin.take()?;
        Some(Reaper { child, stdin })
    }

    /// Remove `name` when we die, unless [`Reaper::release`] comes first.
    pub fn watch(&mut self, name: &str) -> std::io::Result<()> {
        self.send(&format!("+{name}\n"))
    }

    /// `name`'s create was cut short: after we die, look for it again a few times.
    pub fn watch_uncertain(&mut self, name: &str) -> std::io::Result<()> {
        self.send(&format!("?{name}\n"))
    }

    /// `name` is gone (or was never created): forget it.
    pub fn release(&mut self, name: &str) -> std::io::Result<()> {
        self.send(&format!("-{name}\n"))
    }

    fn send(&mut self, line: &str) -> std::io::Result<()> {
        self.stdin.write_all(line.as_bytes())
    }

    /// A reaper that stopped listening (someone killed it): reap it rather than leave a zombie.
    pub fn discard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Run the script with a fake docker that prints its arguments, feeding it `input`.
    fn reap(input: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("docker");
        let log = dir.path().join("log");
        std::fs::write(
            &fake,
            format!("#!/bin/sh\necho \"$@\" > {}\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("safe-exec-reaper")
            .arg(&fake)
            .arg("0 0")
            // The client's global options, one shell word list (as `Reaper::start` passes them).
            .arg(["--context", "eng"].join(" "))
            .arg(["rm", "--force", "--volumes"].join(" "))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait().unwrap();
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&log) {
            file.read_to_string(&mut text).unwrap();
        }
        text
    }

    #[test]
    fn names_still_listed_at_end_of_input_are_removed_in_one_call() {
        let log = reap("+safe-exec-1-0-1\n+safe-exec-1-1-2\n+safe-exec-1-2-3\n-safe-exec-1-1-2\n");
        assert_eq!(
            log,
            "--context eng rm --force --volumes safe-exec-1-0-1 safe-exec-1-2-3\n"
        );
    }

    #[test]
    fn nothing_is_called_when_every_name_was_released() {
        assert_eq!(reap("+safe-exec-1-0-1\n-safe-exec-1-0-1\n"), "");
        assert_eq!(reap(""), "");
    }

    #[test]
    fn names_are_listed_once_and_uncertain_ones_are_removed_again_later() {
        let log = reap("+safe-exec-1-0-1\n+safe-exec-1-0-1\n?safe-exec-1-0-1\n");
        // The fake docker overwrites its log: the last call is a late second look.
        assert_eq!(log, "--context eng rm --force --volumes safe-exec-1-0-1\n");
    }

    #[test]
    fn a_name_that_prefixes_another_is_released_alone() {
        let log = reap("+safe-exec-1-1-1\n+safe-exec-1-1-10\n-safe-exec-1-1-1\n-unknown\n");
        assert_eq!(log, "--context eng rm --force --volumes safe-exec-1-1-10\n");
    }
}
