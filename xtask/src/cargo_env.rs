//! The environment of nested cargo runs and build scripts: [`cargo_command`]
//! and the removal of the variables a calling cargo sets for its own build.

use std::ffi::OsString;
use std::process::Command;

/// Variables a calling cargo sets that must not reach the nested build: flags
/// meant for the outer target, the clippy driver, and the description of the
/// build script that is running.
const LEAKING_VARIABLES: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
    "RUSTC_LINKER",
];

/// Prefixes of per-package variables a calling cargo sets for a build script.
const LEAKING_PREFIXES: &[&str] = &["CARGO_FEATURE_", "CARGO_CFG_", "CARGO_PKG_", "DEP_"];

/// A `cargo` command with an environment cleaned of what a calling cargo sets
/// (flags for the outer target, the build script's own description), for a
/// cargo run from inside another build. Uses the
/// cargo that runs us (`$CARGO`) when there is one.
pub fn cargo_command() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    remove_leaking_variables(&mut command);
    command
}

/// Removes from `command`'s environment what a calling cargo set for its own
/// build ([`LEAKING_VARIABLES`], [`LEAKING_PREFIXES`]).
pub(crate) fn remove_leaking_variables(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if LEAKING_VARIABLES.contains(&name)
            || LEAKING_PREFIXES
                .iter()
                .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_cargo_drops_outer_flags() {
        let command = cargo_command();
        let removed: Vec<_> = command
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_owned())
            .collect();
        for (name, _) in std::env::vars_os() {
            if name == "CARGO_PKG_NAME" || name == "CARGO_MANIFEST_DIR" {
                assert!(removed.contains(&name), "{name:?} leaks");
            }
        }
    }
}
