//! Tests of plugin discovery and naming, the helpers the tests of other
//! modules share, and a check of the workspace's WIT copies.

use super::*;

/// A fresh, empty folder for the test `name`.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-test-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `contents` to `path`, creating its folder.
pub(crate) fn write(path: &Path, contents: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

/// A script plugin's build script that writes the smallest core module.
pub(crate) const EMPTY_MODULE_SCRIPT: &str = "printf '\\0asm\\1\\0\\0\\0' > \"$1\"\n";

#[test]
fn finds_plugins_of_every_kind_and_names_their_artefacts() {
    let dir = temp_dir("find");
    let (examples, tests) = (dir.join("plugins"), dir.join("tests-plugins"));
    write(
        &examples.join("my-crate/Cargo.toml"),
        "[package]\nname = \"my-crate\"\n",
    );
    write(
        &examples.join("renamed/Cargo.toml"),
        "[package]\nname = \"renamed\"\n[lib]\nname = \"custom\"\n",
    );
    write(&examples.join("echo-wat/handler.wat"), "(module)");
    write(&examples.join("echo-js/build.sh"), EMPTY_MODULE_SCRIPT);
    write(&examples.join("echo-js/app.js"), "");
    fs::create_dir_all(examples.join("not-a-plugin")).unwrap();
    write(&examples.join("README.md"), "");
    write(
        &tests.join("probe/Cargo.toml"),
        "[package]\nname = \"probe\"\n",
    );

    let plugins = find_plugins(&[&examples, &tests]).unwrap();
    let found: Vec<_> = plugins
        .iter()
        .map(|plugin| {
            let kind = match plugin {
                Plugin::Crate(_) => "crate",
                Plugin::Wat { .. } => "wat",
                Plugin::Script { .. } => "script",
            };
            (kind, plugin.artefact_name())
        })
        .collect();
    let expected = [
        ("script", "echo_js"),
        ("wat", "echo_wat"),
        ("crate", "my_crate"),
        ("crate", "custom"),
        ("crate", "probe"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(kind, name)| (*kind, (*name).to_owned()))
        .collect();
    assert_eq!(found, expected);
    let Plugin::Crate(renamed) = &plugins[3] else {
        panic!("{:?} is not a crate", plugins[3]);
    };
    assert_eq!(renamed.package, "renamed");
    assert_eq!(plugins[0].dir(), examples.join("echo-js"));

    let out = dir.join("out");
    assert_eq!(
        Destination::Folder(out.clone()).path(&plugins[1]),
        out.join("echo_wat.wasm")
    );
    assert_eq!(
        Destination::Folder(out.clone()).path(&plugins[2]),
        out.join("my_crate.wasm")
    );
    assert_eq!(
        Destination::BesideSources.path(&plugins[2]),
        examples.join("my-crate/handler.wasm")
    );
    assert_eq!(
        Destination::BesideSources.path(&plugins[3]),
        examples.join("renamed/handler.wasm")
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_folder_with_two_kinds_of_plugin_is_an_error() {
    let dir = temp_dir("two-kinds");
    write(&dir.join("both/handler.wat"), "(module)");
    write(&dir.join("both/build.sh"), EMPTY_MODULE_SCRIPT);
    let error = find_plugins(&[&dir]).unwrap_err();
    assert!(error.to_string().contains("more than one"), "{error}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn plugins_with_the_same_artefact_name_are_an_error() {
    let dir = temp_dir("same-name");
    write(&dir.join("a/echo-wat/handler.wat"), "(module)");
    write(&dir.join("b/echo_wat/build.sh"), EMPTY_MODULE_SCRIPT);
    let error = find_plugins(&[dir.join("a"), dir.join("b")]).unwrap_err();
    assert!(
        error.to_string().contains("same artefact name echo_wat"),
        "{error}"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_manifest_without_a_name_is_an_error() {
    let dir = temp_dir("nameless");
    fs::write(dir.join("Cargo.toml"), "[package]\n").unwrap();
    let error = PluginCrate::read(&dir).unwrap_err();
    assert!(error.to_string().contains("no package.name"), "{error}");
    fs::remove_dir_all(dir).unwrap();
}

/// The files under `dir`, as paths relative to it, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                files.push(path.strip_prefix(root).unwrap().to_owned());
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.sort();
    files
}

/// The guest SDK generates its bindings from its own copy of the WIT, so
/// that a packaged `wasmgate-guest` carries it; `wit/` at the workspace
/// root stays the source of truth.
#[test]
fn guest_sdk_wit_is_a_copy_of_the_workspace_wit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let (original, copy) = (root.join("wit"), root.join("guest-sdk").join("wit"));
    let files = files_under(&original);
    assert!(!files.is_empty(), "{} holds no files", original.display());
    assert_eq!(
        files_under(&copy),
        files,
        "guest-sdk/wit/ must hold the same files as wit/; replace it with a copy: \
         rm -r guest-sdk/wit && cp -r wit guest-sdk/wit"
    );
    for file in &files {
        let (from, to) = (original.join(file), copy.join(file));
        assert!(
            fs::read(&from).unwrap() == fs::read(&to).unwrap(),
            "{} differs from {}, its source of truth; copy it: cp wit/{} guest-sdk/wit/{}",
            to.display(),
            from.display(),
            file.display(),
            file.display()
        );
    }
}
