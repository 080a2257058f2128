//! Running a `command` job: directly (never through a shell), in its own process group, with a
//! scrubbed environment, the extra variables in `HOOKFORGE_EXTRA_VARS` and in a temporary file
//! named by `HOOKFORGE_EXTRA_VARS_FILE`, output captured (bounded), a timeout and cancellation
//! (SIGTERM to the group, SIGKILL after a grace period).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::output::{MAX_OUTPUT, Tail};
use crate::domain::job::JobStatus;
use crate::domain::job_template::CommandSpec;

/// How a finished job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Final status.
    pub status: JobStatus,
    /// Exit code, when the process exited.
    pub exit_code: Option<i32>,
    /// Why it failed, errored or was canceled.
    pub explanation: Option<String>,
    /// The last bytes of output.
    pub stdout: Vec<u8>,
}

/// Environment variables passed through from the server (nothing else is).
const PASSED_THROUGH: [&str; 3] = ["PATH", "HOME", "LANG"];

/// Runs `spec` with `extra_vars` (JSON) until it exits, `timeout` passes or `cancel` turns true.
/// `started` is called once the process runs; `output` receives the live tail.
pub async fn run(
    spec: &CommandSpec,
    extra_vars: &[u8],
    timeout: Duration,
    kill_grace: Duration,
    mut cancel: watch::Receiver<bool>,
    output: Arc<Mutex<Tail>>,
    started: impl FnOnce(),
) -> Outcome {
    let error = |explanation: String| Outcome {
        status: JobStatus::Error,
        exit_code: None,
        explanation: Some(explanation),
        stdout: Vec::new(),
    };
    let scratch = match tempfile::Builder::new().prefix("hookforge-job-").tempdir() {
        Ok(dir) => dir,
        Err(e) => return error(format!("cannot create a temporary directory: {e}")),
    };
    let vars_file = scratch.path().join("extra_vars.json");
    if let Err(e) = write_private(&vars_file, extra_vars) {
        return error(format!("cannot write the extra variables file: {e}"));
    }
    let Some(program) = spec.argv.first() else {
        return error("the job template has no command to run".to_owned());
    };
    let mut command = tokio::process::Command::new(program);
    command.args(&spec.argv[1..]).env_clear();
    for name in PASSED_THROUGH {
        if let Ok(value) = std::env::var(name) {
            command.env(name, value);
        }
    }
    command
        .envs(&spec.env)
        .env(
            "HOOKFORGE_EXTRA_VARS",
            String::from_utf8_lossy(extra_vars).as_ref(),
        )
        .env("HOOKFORGE_EXTRA_VARS_FILE", &vars_file)
        .current_dir(
            spec.working_dir
                .as_deref()
                .map_or(scratch.path(), std::path::Path::new),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return error(format!("cannot start {}: {e}", spec.argv[0])),
    };
    started();
    let pgid = child.id().map(|pid| Pid::from_raw(pid as i32));
    let readers = [
        child
            .stdout
            .take()
            .map(|s| tokio::spawn(capture(s, output.clone()))),
        child
            .stderr
            .take()
            .map(|s| tokio::spawn(capture(s, output.clone()))),
    ];
    enum Stop {
        Exited(std::io::Result<std::process::ExitStatus>),
        TimedOut,
        Canceled,
    }
    let stop = tokio::select! {
        status = child.wait() => Stop::Exited(status),
        _ = tokio::time::sleep(timeout) => Stop::TimedOut,
        _ = super::canceled(&mut cancel) => Stop::Canceled,
    };
    let status = match &stop {
        Stop::Exited(status) => status.as_ref().ok().copied(),
        Stop::TimedOut | Stop::Canceled => terminate(&mut child, pgid, kill_grace).await,
    };
    for reader in readers.into_iter().flatten() {
        let _ = reader.await;
    }
    let stdout = output.lock().expect("output lock poisoned").to_vec();
    let exit_code = status.and_then(|s| s.code());
    let (status, explanation) = match stop {
        Stop::TimedOut => (
            JobStatus::Failed,
            Some(format!(
                "timed out after {} s and was killed",
                timeout.as_secs()
            )),
        ),
        Stop::Canceled => (JobStatus::Canceled, Some("canceled on request".to_owned())),
        Stop::Exited(_) => match (exit_code, status) {
            (Some(0), _) => (JobStatus::Successful, None),
            (Some(code), _) => (JobStatus::Failed, Some(format!("exited with code {code}"))),
            (None, Some(s)) => (
                JobStatus::Failed,
                Some(format!("terminated by a signal ({s})")),
            ),
            (None, None) => (
                JobStatus::Error,
                Some("lost track of the process".to_owned()),
            ),
        },
    };
    Outcome {
        status,
        exit_code,
        explanation,
        stdout,
    }
}

/// SIGTERM to the whole process group, then SIGKILL once `grace` has passed.
async fn terminate(
    child: &mut tokio::process::Child,
    pgid: Option<Pid>,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    if let Some(pgid) = pgid {
        let _ = killpg(pgid, Signal::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => {
            if let Some(pgid) = pgid {
                let _ = killpg(pgid, Signal::SIGKILL); // stragglers in the group
            }
            status.ok()
        }
        Err(_) => {
            if let Some(pgid) = pgid {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            child.wait().await.ok()
        }
    }
}

async fn capture(mut stream: impl tokio::io::AsyncRead + Unpin, output: Arc<Mutex<Tail>>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => output.lock().expect("output lock poisoned").push(&buf[..n]),
        }
    }
}

fn write_private(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    crate::secrets::write_private_file(path, contents)
}

/// A fresh output tail of the standard size.
pub fn new_output() -> Arc<Mutex<Tail>> {
    Arc::new(Mutex::new(Tail::new(MAX_OUTPUT)))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn spec(argv: &[&str]) -> CommandSpec {
        CommandSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: Default::default(),
            working_dir: None,
        }
    }

    async fn go(spec: &CommandSpec, vars: &[u8], timeout: Duration) -> Outcome {
        let (_tx, rx) = watch::channel(false);
        run(
            spec,
            vars,
            timeout,
            Duration::from_millis(200),
            rx,
            new_output(),
            || {},
        )
        .await
    }

    #[tokio::test]
    async fn success_failure_and_output() {
        let ok = go(
            &spec(&[
                "/bin/sh",
                "-c",
                "echo out; echo err >&2; printf '%s' \"$HOOKFORGE_EXTRA_VARS\"",
            ]),
            br#"{"a":1}"#,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(ok.status, JobStatus::Successful, "{ok:?}");
        let text = String::from_utf8(ok.stdout).unwrap();
        assert!(
            text.contains("out") && text.contains("err") && text.contains(r#"{"a":1}"#),
            "{text}"
        );
        let failed = go(
            &spec(&["/bin/sh", "-c", "echo failing; exit 3"]),
            b"{}",
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(
            (failed.status, failed.exit_code),
            (JobStatus::Failed, Some(3))
        );
        let missing = go(
            &spec(&["/nonexistent/program"]),
            b"{}",
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(missing.status, JobStatus::Error);
    }

    #[tokio::test]
    async fn the_environment_is_scrubbed_and_the_vars_file_is_removed() {
        let out = go(&spec(&["/bin/sh", "-c", "env; cat \"$HOOKFORGE_EXTRA_VARS_FILE\"; echo; echo FILE=$HOOKFORGE_EXTRA_VARS_FILE"]), br#"{"k":"v"}"#, Duration::from_secs(10)).await;
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(!text.contains("CARGO"), "server environment leaked: {text}");
        assert!(text.contains(r#"{"k":"v"}"#));
        let file = text.lines().find_map(|l| l.strip_prefix("FILE=")).unwrap();
        assert!(
            !std::path::Path::new(file).exists(),
            "the extra vars file outlived the job"
        );
    }

    #[tokio::test]
    async fn timeouts_and_cancels_kill_the_whole_group() {
        let slow = spec(&["/bin/sh", "-c", "sleep 30 & sleep 30; echo never"]);
        let started = Instant::now();
        let timed_out = go(&slow, b"{}", Duration::from_millis(300)).await;
        assert_eq!(timed_out.status, JobStatus::Failed);
        assert!(timed_out.explanation.unwrap().contains("timed out"));
        assert!(started.elapsed() < Duration::from_secs(5));

        let (tx, rx) = watch::channel(false);
        let handle = tokio::spawn(async move {
            run(
                &slow,
                b"{}",
                Duration::from_secs(60),
                Duration::from_millis(200),
                rx,
                new_output(),
                || {},
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(true).unwrap();
        let canceled = tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(canceled.status, JobStatus::Canceled);
    }

    #[tokio::test]
    async fn output_is_bounded() {
        let noisy = spec(&[
            "/bin/sh",
            "-c",
            "head -c 3000000 /dev/zero | tr '\\0' x; echo END",
        ]);
        let out = go(&noisy, b"{}", Duration::from_secs(20)).await;
        assert_eq!(out.status, JobStatus::Successful);
        assert_eq!(out.stdout.len(), MAX_OUTPUT);
        assert!(String::from_utf8_lossy(&out.stdout).ends_with("END\n"));
    }
}
