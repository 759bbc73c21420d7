//! The gateway's config file (`wasmgate serve --config wasmgate.toml`):
//! every flag of `wasmgate serve` under its own name in snake case,
//! grouped in sections.
//!
//! [`KEYS`] is the one table of what a file may hold; the README's
//! reference table is checked against it. Reading a file checks sections,
//! keys and value types and remembers each key's line; the ranges of the
//! values are the flags' own, checked where the flags are parsed, so the
//! file and the command line can never disagree on what is valid. Flags and
//! environment variables override the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::Spanned;

/// Largest config file, in bytes.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;

/// The type of a key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string (an address, a path).
    Text,
    /// A non-negative integer.
    Integer,
    /// `true` sets the flag; `false` leaves it off.
    Switch,
    /// A `redis://` or `rediss://` URL.
    RedisUrl,
    /// One of the listed words.
    OneOf(&'static [&'static str]),
}

/// One key a config file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// Its section, `[section]`.
    pub section: &'static str,
    /// Its name within the section: for a flag, the flag's name in snake case.
    pub name: &'static str,
    /// The type of its value.
    pub kind: Kind,
    /// The flag's name when it is not the key's (`cluster.redis` is
    /// `--cluster`).
    pub long: Option<&'static str>,
}

const fn flag(section: &'static str, name: &'static str, kind: Kind) -> Key {
    Key {
        section,
        name,
        kind,
        long: None,
    }
}

/// A flag whose name is not the key's.
const fn flag_named(
    section: &'static str,
    name: &'static str,
    long: &'static str,
    kind: Kind,
) -> Key {
    Key {
        section,
        name,
        kind,
        long: Some(long),
    }
}

/// Every key a config file may hold, section by section.
pub const KEYS: &[Key] = &[
    flag("listen", "listen", Kind::Text),
    flag("listen", "control_listen", Kind::Text),
    flag("plugins", "plugins", Kind::Text),
    flag("plugins", "max_plugin_file_mb", Kind::Integer),
    flag("plugins", "no_watch", Kind::Switch),
    flag("limits", "max_concurrency", Kind::Integer),
    flag("limits", "max_memory_mb", Kind::Integer),
    flag("limits", "memory_budget_mb", Kind::Integer),
    flag("limits", "outbound_budget_mb", Kind::Integer),
    flag("front_door", "max_connections", Kind::Integer),
    flag("front_door", "max_connections_per_ip", Kind::Integer),
    flag("front_door", "max_control_connections", Kind::Integer),
    flag("front_door", "fd_reserve", Kind::Integer),
    flag("front_door", "header_timeout_ms", Kind::Integer),
    flag("front_door", "handshake_timeout_ms", Kind::Integer),
    flag("front_door", "max_request_head_bytes", Kind::Integer),
    flag("front_door", "frame_budget_mb", Kind::Integer),
    flag("compile", "compile_jobs", Kind::Integer),
    flag("compile", "compile_threads", Kind::Integer),
    flag("compile", "compile_timeout_s", Kind::Integer),
    flag("compile", "compile_memory_mb", Kind::Integer),
    flag("compile", "compile_progress_ms", Kind::Integer),
    flag("compile", "compile_in_process", Kind::Switch),
    flag("cache", "cache_dir", Kind::Text),
    flag("cache", "cache_max_mb", Kind::Integer),
    flag("cache", "no_cache", Kind::Switch),
    flag("state", "state_file", Kind::Text),
    flag("state", "memory_state", Kind::Switch),
    flag("tls", "tls_cert", Kind::Text),
    flag("tls", "tls_key", Kind::Text),
    flag("logging", "log_format", Kind::OneOf(&["text", "json"])),
    flag("metrics", "metrics_token", Kind::Text),
    flag_named("cluster", "redis", "cluster", Kind::RedisUrl),
    flag_named("kv", "type", "kv", Kind::OneOf(&["redb", "redis"])),
    flag_named("kv", "url", "kv_url", Kind::RedisUrl),
];

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a section is not a table.
    #[error("{path}:{line}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The line the parser stopped at.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// One or more keys are unknown or have a value of the wrong kind.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Keys(Vec<KeyError>),
}

/// What is wrong with one key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}: `{key}`: {message}")]
pub struct KeyError {
    /// The file.
    pub path: PathBuf,
    /// The key's line.
    pub line: usize,
    /// `section.key` (or `section` for an unknown section).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// One key a file sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Which key.
    pub key: Key,
    /// Its value as a flag would carry it; `None` for a switch set to
    /// `true`.
    pub value: Option<String>,
    /// Its line, for messages.
    pub line: usize,
}

impl Setting {
    /// The flag this setting stands for, `--max-connections` for
    /// `max_connections`.
    pub fn flag(&self) -> String {
        format!(
            "--{}",
            self.key.long.unwrap_or(self.key.name).replace('_', "-")
        )
    }

    /// The setting as an argument of `wasmgate serve`: `--flag=value`, or
    /// `--flag` for a switch.
    pub fn argument(&self) -> String {
        match &self.value {
            Some(value) => format!("{}={value}", self.flag()),
            None => self.flag(),
        }
    }

    /// `section.key`.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.key.section, self.key.name)
    }
}

/// A read and checked config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// What it sets, in file order.
    pub settings: Vec<Setting>,
}

/// Sections and their keys, each with its span (ordered by name; the
/// results are put back in file order by line).
type RawFile = BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<toml::Value>>>;

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl ConfigFile {
    /// Reads and checks the file at `path`.
    pub fn read(path: &Path) -> Result<Self, FileError> {
        let read_error = |source| FileError::Read {
            path: path.to_owned(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_error)?.len();
        if size > MAX_CONFIG_FILE_BYTES {
            return Err(read_error(std::io::Error::other(format!(
                "larger than {MAX_CONFIG_FILE_BYTES} bytes"
            ))));
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        Self::parse(&text, path)
    }

    /// Checks the text of a file read from `path`: sections, keys and the
    /// kinds of values (not their ranges: those are the flags').
    pub fn parse(text: &str, path: &Path) -> Result<Self, FileError> {
        let sections: RawFile = toml::from_str(text).map_err(|e| FileError::Syntax {
            path: path.to_owned(),
            line: e.span().map_or(1, |span| line_of(text, span.start)),
            message: e.message().trim().to_owned(),
        })?;
        let mut settings = Vec::new();
        let mut errors = Vec::new();
        let mut error = |line, key: String, message: String| {
            errors.push(KeyError {
                path: path.to_owned(),
                line,
                key,
                message,
            })
        };
        for (section, keys) in sections {
            let section_line = line_of(text, section.span().start);
            let section = section.into_inner();
            if !KEYS.iter().any(|key| key.section == section) {
                let known: Vec<_> = section_names().collect();
                error(
                    section_line,
                    section,
                    format!("unknown section; known: {}", known.join(", ")),
                );
                continue;
            }
            for (name, value) in keys {
                let line = line_of(text, name.span().start);
                let name = name.into_inner();
                let qualified = format!("{section}.{name}");
                let Some(key) = KEYS
                    .iter()
                    .find(|key| key.section == section && key.name == name)
                else {
                    let known: Vec<_> = KEYS
                        .iter()
                        .filter(|key| key.section == section)
                        .map(|key| key.name)
                        .collect();
                    error(
                        line,
                        qualified,
                        format!("unknown key; [{section}] holds {}", known.join(", ")),
                    );
                    continue;
                };
                match checked(key.kind, value.into_inner()) {
                    Ok(Some(value)) => settings.push(Setting {
                        key: *key,
                        value,
                        line,
                    }),
                    Ok(None) => {}
                    Err(message) => error(line, qualified, message),
                }
            }
        }
        if !errors.is_empty() {
            errors.sort_by_key(|error| error.line);
            return Err(FileError::Keys(errors));
        }
        settings.sort_by_key(|setting| setting.line);
        Ok(Self {
            path: path.to_owned(),
            settings,
        })
    }

    /// The value of a key the file sets (a switch set to `true` has none).
    pub fn get(&self, section: &str, name: &str) -> Option<&Setting> {
        self.settings
            .iter()
            .find(|setting| setting.key.section == section && setting.key.name == name)
    }
}

/// The sections of [`KEYS`], each once, in order.
pub fn section_names() -> impl Iterator<Item = &'static str> {
    KEYS.iter()
        .enumerate()
        .filter(|(i, key)| KEYS[..*i].iter().all(|k| k.section != key.section))
        .map(|(_, key)| key.section)
}

/// A value of `kind` as a flag carries it: `Ok(None)` for a switch left
/// off, `Ok(Some(None))` for one set.
#[allow(clippy::option_option)]
fn checked(kind: Kind, value: toml::Value) -> Result<Option<Option<String>>, String> {
    let found = value.type_str();
    match (kind, value) {
        (Kind::Text, toml::Value::String(text)) => Ok(Some(Some(text))),
        (Kind::Integer, toml::Value::Integer(n)) if n >= 0 => Ok(Some(Some(n.to_string()))),
        (Kind::Integer, toml::Value::Integer(n)) => Err(format!("must not be negative, not {n}")),
        (Kind::Switch, toml::Value::Boolean(on)) => Ok(on.then_some(None)),
        (Kind::RedisUrl, toml::Value::String(url)) => {
            let rest = url
                .strip_prefix("redis://")
                .or_else(|| url.strip_prefix("rediss://"));
            match rest {
                Some(rest) if !rest.is_empty() => Ok(Some(Some(url))),
                _ => Err(format!(
                    "must be a redis:// or rediss:// URL with a host, not {url:?}"
                )),
            }
        }
        (Kind::OneOf(words), toml::Value::String(word)) if words.contains(&word.as_str()) => {
            Ok(Some(Some(word)))
        }
        (Kind::OneOf(words), toml::Value::String(word)) => Err(format!(
            "must be one of {}, not {word:?}",
            words
                .iter()
                .map(|w| format!("{w:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        (Kind::Text | Kind::RedisUrl | Kind::OneOf(_), _) => {
            Err(format!("must be a string, not {found}"))
        }
        (Kind::Integer, _) => Err(format!("must be an integer, not {found}")),
        (Kind::Switch, _) => Err(format!("must be true or false, not {found}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, FileError> {
        ConfigFile::parse(text, Path::new("wasmgate.toml"))
    }

    fn key_errors(text: &str) -> Vec<KeyError> {
        match parse(text) {
            Err(FileError::Keys(errors)) => errors,
            other => panic!("expected key errors, got {other:?}"),
        }
    }

    #[test]
    fn reads_values_as_their_flags_carry_them() {
        let file = parse(
            "[listen]\nlisten = \"0.0.0.0:9000\"\n\n[front_door]\nmax_connections = 5000\n\
             [cache]\nno_cache = true\n[state]\nmemory_state = false\n\
             [cluster]\nredis = \"redis://cache:6379\"\n\
             [kv]\ntype = \"redis\"\nurl = \"redis://kv:6379\"\n",
        )
        .unwrap();
        let listen = file.get("listen", "listen").unwrap();
        assert_eq!(
            (listen.flag(), listen.value.as_deref(), listen.line),
            ("--listen".into(), Some("0.0.0.0:9000"), 2)
        );
        let cap = file.get("front_door", "max_connections").unwrap();
        assert_eq!((cap.value.as_deref(), cap.line), (Some("5000"), 5));
        assert_eq!(file.get("cache", "no_cache").unwrap().value, None);
        assert!(file.get("state", "memory_state").is_none());
        let cluster = file.get("cluster", "redis").unwrap();
        assert_eq!(
            (cluster.flag(), cluster.value.as_deref()),
            ("--cluster".into(), Some("redis://cache:6379"))
        );
        let kind = file.get("kv", "type").unwrap();
        assert_eq!(
            (kind.flag(), kind.value.as_deref()),
            ("--kv".into(), Some("redis"))
        );
        let url = file.get("kv", "url").unwrap();
        assert_eq!(
            (url.flag(), url.value.as_deref()),
            ("--kv-url".into(), Some("redis://kv:6379"))
        );
    }

    #[test]
    fn an_unknown_key_or_section_and_a_wrong_type_name_key_and_line() {
        let errors = key_errors(
            "[limits]\nmax_concurency = 5\n[front_door]\nheader_timeout_ms = \"10s\"\n\
             [metricz]\nport = 1\n[kv]\ntype = \"sqlite\"\n[cluster]\nredis = \"http://x\"\n",
        );
        let found: Vec<_> = errors.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert_eq!(
            found,
            [
                ("limits.max_concurency", 2),
                ("front_door.header_timeout_ms", 4),
                ("metricz", 5),
                ("kv.type", 8),
                ("cluster.redis", 10),
            ]
        );
        assert!(errors[0].message.contains("unknown key"), "{}", errors[0]);
        assert!(errors[1].message.contains("integer"), "{}", errors[1]);
        assert_eq!(
            errors[1].to_string(),
            "wasmgate.toml:4: `front_door.header_timeout_ms`: must be an integer, not string"
        );
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        match parse("[listen]\nlisten = \"a\"\ncontrol_listen = \n") {
            Err(FileError::Syntax { line, .. }) => assert_eq!(line, 3),
            other => panic!("expected a syntax error, got {other:?}"),
        }
        // A key outside any section is a section that is not a table.
        assert!(matches!(
            parse("listen = \"127.0.0.1:1\"\n"),
            Err(FileError::Syntax { line: 1, .. })
        ));
    }

    #[test]
    fn the_readme_documents_every_key() {
        let readme = include_str!("../../../README.md");
        for key in KEYS {
            let row = format!("| `{}` | `{}` |", key.section, key.name);
            assert!(readme.contains(&row), "README lacks the row {row}");
        }
    }
}
