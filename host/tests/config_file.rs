//! `wasmgate serve --config FILE` and `wasmgate config check FILE`, run as
//! the binary: what the file sets, what a flag and an environment variable
//! override, and the exit codes and messages of `config check`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

mod common;

const BINARY: &str = env!("CARGO_BIN_EXE_wasmgate");

/// A config file listening on free ports, capping the public listener at 77.
fn config_file(dir: &Path) -> std::path::PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let path = dir.join("wasmgate.toml");
    std::fs::write(
        &path,
        format!(
            "[listen]\nlisten = \"127.0.0.1:0\"\ncontrol_listen = \"127.0.0.1:0\"\n\
             [plugins]\nplugins = {plugins:?}\nno_watch = true\n\
             [front_door]\nmax_connections = 77\n\
             [state]\nmemory_state = true\n[cache]\nno_cache = true\n\
             [kv]\ntype = \"redb\"\n"
        ),
    )
    .unwrap();
    path
}

/// Starts `wasmgate serve` with `args` and `env`, and returns the
/// `max_connections` of its "gateway listening" line.
fn served_max_connections(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut child = Command::new(BINARY)
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut listening = None;
    for line in lines.map_while(Result::ok) {
        if line.contains("gateway listening") {
            listening = Some(line);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = listening.expect("wasmgate exited before listening");
    let start = line.find("max_connections=").unwrap() + "max_connections=".len();
    line[start..].split_whitespace().next().unwrap().to_owned()
}

#[test]
fn the_file_sets_a_value_and_a_flag_or_an_environment_variable_overrides_it() {
    let dir = common::scratch("config-precedence");
    let file = config_file(&dir);
    let file = file.to_str().unwrap();
    assert_eq!(served_max_connections(&["--config", file], &[]), "77");
    assert_eq!(
        served_max_connections(&["--config", file, "--max-connections", "55"], &[]),
        "55"
    );
    assert_eq!(
        served_max_connections(&["--config", file], &[("WASMGATE_MAX_CONNECTIONS", "66")]),
        "66"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn check(path: &Path) -> (i32, String, String) {
    let output = Command::new(BINARY)
        .args(["config", "check"])
        .arg(path)
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn config_check_exits_0_for_a_valid_file_and_1_naming_key_and_line_otherwise() {
    let dir = common::scratch("config-check");
    let good = config_file(&dir);
    let (code, stdout, _) = check(&good);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("ok, 8 keys"), "{stdout}");

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[limits]\nmax_concurrency = 8\nmax_memory = 5\n").unwrap();
    let (code, _, stderr) = check(&bad);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("bad.toml:3: `limits.max_memory`: unknown key"),
        "{stderr}"
    );

    std::fs::write(&bad, "[compile]\ncompile_jobs = \"two\"\n").unwrap();
    let (code, _, stderr) = check(&bad);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("bad.toml:2: `compile.compile_jobs`: must be an integer"),
        "{stderr}"
    );

    // A value of the right type outside the flag's range.
    std::fs::write(&bad, "[compile]\n\ncompile_jobs = 0\n").unwrap();
    let (code, _, stderr) = check(&bad);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("bad.toml:3: `compile.compile_jobs`"),
        "{stderr}"
    );
    assert!(stderr.contains("not in 1..=64"), "{stderr}");

    let (code, _, stderr) = check(&dir.join("missing.toml"));
    assert_eq!(code, 1);
    assert!(stderr.contains("missing.toml"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `wasmgate` with `args` to its end (a start refused is quick; a hang
/// guard kills it after 60 s); its exit code and standard error.
fn exit_of(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(BINARY)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("wasmgate {args:?} did not exit");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn a_clustered_node_refuses_a_redb_key_value_store_at_start_and_config_check_says_why() {
    let dir = common::scratch("config-kv");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let plugins = plugins.to_str().unwrap();
    // Nothing listens on port 1: the refusal comes before any connection.
    let serve = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--control-listen",
        "127.0.0.1:0",
    ];
    let cluster = [
        "--plugins",
        plugins,
        "--no-cache",
        "--cluster",
        "redis://127.0.0.1:1",
    ];
    let refused = "`kv.type = \"redb\"` (--kv redb) is refused on a clustered node";

    let (code, stderr) = exit_of(&[&serve[..], &cluster[..], &["--kv", "redb"]].concat());
    assert_ne!(code, 0);
    assert!(stderr.contains(refused), "{stderr}");

    // The redb store's own settings are refused too, rather than ignored.
    let (code, stderr) = exit_of(&[&serve[..], &cluster[..], &["--memory-state"]].concat());
    assert_ne!(code, 0);
    assert!(
        stderr.contains("`state.memory_state` (--memory-state) sets up the redb store, but a clustered node keeps its key-value store on Redis"),
        "{stderr}"
    );

    // The same from a config file, where `config check` finds it first.
    let file = dir.join("cluster.toml");
    std::fs::write(
        &file,
        format!(
            "[plugins]\nplugins = {plugins:?}\n[cache]\nno_cache = true\n\
             [cluster]\nredis = \"redis://127.0.0.1:1\"\n[kv]\ntype = \"redb\"\n"
        ),
    )
    .unwrap();
    let (code, _, stderr) = check(&file);
    assert_eq!(code, 1);
    assert!(stderr.contains(refused), "{stderr}");
    let file = file.to_str().unwrap();
    let (code, stderr) = exit_of(&[&serve[..], &["--config", file]].concat());
    assert_ne!(code, 0);
    assert!(stderr.contains(refused), "{stderr}");

    // Redis chosen, explicitly or by default, passes the check.
    let redis = dir.join("redis.toml");
    std::fs::write(
        &redis,
        "[cluster]\nredis = \"redis://127.0.0.1:1\"\n[kv]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:2\"\n",
    )
    .unwrap();
    assert_eq!(check(&redis).0, 0);
    let _ = std::fs::remove_dir_all(&dir);
}
