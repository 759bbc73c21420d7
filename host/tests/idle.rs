//! The release-shaped gateway, run as its own process: what it costs while
//! no client is connected. Measured from outside, through `/proc`, so other
//! tests running in parallel cannot blur it.

mod common;

use std::time::Duration;

use common::{echo_plugins, scratch, GatewayProcess};

#[test]
fn an_idle_gateway_watching_its_plugins_does_no_work() {
    let root = scratch("idle");
    let plugins = echo_plugins(&root, "idle", 12);
    let gateway = GatewayProcess::start(&plugins, &root.join("cache"), &[], &[]);
    // Whatever start-up itself costs is over after a moment.
    std::thread::sleep(Duration::from_secs(2));
    let (ticks_before, read_before) = gateway.usage();
    std::thread::sleep(Duration::from_secs(5));
    let (ticks_after, read_after) = gateway.usage();
    drop(gateway);
    std::fs::remove_dir_all(&root).unwrap();

    let read = read_after - read_before;
    let ticks = ticks_after - ticks_before;
    // Reading its own plugin files must not make the watcher read them
    // again: 12 services of a few hundred bytes each would show as
    // megabytes within seconds.
    assert!(read < 16 << 10, "read {read} bytes in 5 s while idle");
    // A clock tick is 10 ms: a few ticks in 5 s is noise, a loop is not.
    assert!(
        ticks <= 5,
        "used {ticks} clock ticks of CPU in 5 s while idle"
    );
}
