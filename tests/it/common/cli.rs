//! The built `spangate` binary, run as a user runs it: from the repository
//! root, stdin closed, with no admin token or config file inherited from the
//! environment the tests run in.

use std::process::{Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_spangate");
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What a run printed and how it ended (`-1`: killed by a signal).
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The command for `args` with `env` set on top of a clean environment.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(ROOT)
        .args(args)
        .env_remove("SPANGATE_ADMIN_TOKEN")
        .env_remove("SPANGATE_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

fn out(o: std::process::Output) -> Out {
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Run to completion (blocking: for plain `#[test]`s).
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Out {
    out(command(args, env).output().expect("run spangate"))
}

/// Run to completion without blocking the runtime.
pub async fn run_async(args: &[&str], env: &[(&str, &str)]) -> Out {
    let o = tokio::process::Command::from(command(args, env))
        .output()
        .await
        .expect("run spangate");
    out(o)
}

impl From<Out> for (i32, String, String) {
    fn from(o: Out) -> Self {
        (o.code, o.stdout, o.stderr)
    }
}

/// [`run`] with nothing added to the environment, as (code, stdout, stderr).
pub fn run_plain(args: &[&str]) -> (i32, String, String) {
    run(args, &[]).into()
}
