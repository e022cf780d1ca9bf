//! Helpers for tests that run real processes: a test re-executes its own
//! test binary, filtered to itself, with a role in the environment.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

/// The environment variable that carries a child's role.
pub const ROLE_VAR: &str = "POLYCEPHALY_TEST_ROLE";

/// The role this process was started with, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// Starts this test binary again, running only `test_name` (its full path
/// within the test crate, e.g. `futex_wake_crosses_processes`), with `role`
/// and the extra environment `env`. The child's stdout/stderr are inherited.
pub fn spawn_self(test_name: &str, role: &str, env: &[(&str, String)]) -> Child {
    self_command(test_name, role, env)
        .spawn()
        .expect("spawn child test process")
}

/// As [`spawn_self`], handing the child `region` (it calls
/// `Region::inherited`).
pub fn spawn_self_with(
    test_name: &str,
    role: &str,
    env: &[(&str, String)],
    region: &polycephaly::region::Region,
) -> Child {
    let mut cmd = self_command(test_name, role, env);
    region.share_with(&mut cmd).expect("hand the region over");
    cmd.spawn().expect("spawn child test process")
}

fn self_command(test_name: &str, role: &str, env: &[(&str, String)]) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    // `--include-ignored`: the long fault loops are `#[ignore]`d tests,
    // and their children must run them too.
    cmd.args([
        "--exact",
        test_name,
        "--nocapture",
        "--test-threads=1",
        "--include-ignored",
    ])
    .env(ROLE_VAR, role)
    .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // A child dies with the thread that started it: a test that fails
    // (a panicking conductor) leaves no process running behind it.
    // SAFETY: between fork and exec the child makes one system call
    // (prctl), async-signal-safe, and touches no memory of the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    cmd
}

/// Waits for `child` and asserts that it exited successfully.
pub fn expect_success(mut child: Child) {
    let status = child.wait().expect("wait for child");
    assert!(status.success(), "child failed: {status}");
}

pub mod fault;

/// The role of a test's conductor process (see [`isolated`]).
pub const CONDUCTOR: &str = "conductor";

/// Runs `body` in a process of its own: this test binary started again,
/// filtered to `test_name`, with the role [`CONDUCTOR`]. Tests of one
/// binary run as threads of one process; a test that counts its
/// descriptors and children must be alone in its process to count only
/// its own. The test function dispatches its other roles first, then
/// calls this.
pub fn isolated(test_name: &str, body: impl FnOnce()) {
    match role().as_deref() {
        Some(CONDUCTOR) => body(),
        None => expect_success(spawn_self(test_name, CONDUCTOR, &[])),
        Some(other) => panic!("{test_name}: unexpected role {other}"),
    }
}
