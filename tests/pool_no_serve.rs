//! A program that builds a pool without calling `serve` first gets a typed
//! error at once, naming the fix: no drone is started, nothing hangs.

use polycephaly::pool::{Pool, PoolError};

#[test]
fn building_without_serve_names_the_fix() {
    let err = Pool::builder().drones(1).build().unwrap_err();
    assert!(matches!(err, PoolError::NotServing), "{err}");
    let text = err.to_string();
    assert!(text.contains("polycephaly::pool::serve"), "{text}");
    // Nothing was started: no thread of ours has a child.
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        assert!(children.trim().is_empty(), "{children}");
    }
}
