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
    cmd.args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, role)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Waits for `child` and asserts that it exited successfully.
pub fn expect_success(mut child: Child) {
    let status = child.wait().expect("wait for child");
    assert!(status.success(), "child failed: {status}");
}
