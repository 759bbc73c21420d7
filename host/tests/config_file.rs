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
             [kv]\nbackend = \"redb\"\n"
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
    assert!(
        stdout.contains("kv.backend: reserved, not yet used"),
        "{stdout}"
    );

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
