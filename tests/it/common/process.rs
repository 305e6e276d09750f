//! The real binary as a child process: spawned servers whose output the test reads, and
//! one-shot commands.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// The binary under test.
pub const HUIXIN: &str = env!("CARGO_BIN_EXE_huixin");

/// A spawned server, killed on drop; its stdout lines arrive on a channel.
pub struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Lines read so far.
    pub seen: Vec<String>,
    /// The last lines of its standard error.
    errors: Arc<Mutex<Vec<String>>>,
}

/// How many lines of a process's standard error are kept.
const STDERR_KEPT: usize = 20;

impl Running {
    /// Starts `program` in `dir` with `args` and extra `env`.
    pub fn spawn(program: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("HUIXIN_CONFIG")
            .env("RUST_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let errors = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&errors);
        // Its last lines of standard error, kept to explain a process that died.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut kept = kept.lock().unwrap();
                if kept.len() == STDERR_KEPT {
                    kept.remove(0);
                }
                kept.push(line);
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines: rx,
            seen: Vec::new(),
            errors,
        }
    }

    /// Waits for a stdout line containing `needle`.
    pub fn wait_for(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => {
                    // A process that died: a moment for its last words to be read.
                    std::thread::sleep(Duration::from_millis(200));
                    panic!(
                        "no line containing {needle:?}; saw {:?}; standard error ended with {:?}",
                        self.seen,
                        self.errors.lock().unwrap()
                    )
                }
            }
        }
    }

    /// The callback URL from the banner.
    pub fn url(&mut self) -> String {
        let line = self.wait_for("listening on");
        line.split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("URL in banner")
            .to_owned()
    }

    /// Sends SIGTERM and returns whether it exited cleanly.
    pub fn terminate(mut self) -> bool {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: signalling our own child process by its pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `huixin args` in `dir` to completion.
pub fn huixin(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(HUIXIN);
    cmd.args(args).current_dir(dir).env_remove("HUIXIN_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run huixin")
}

/// Standard output, lossy.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error, lossy.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
