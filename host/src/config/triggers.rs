//! The trigger settings of `service.toml`: route templates of the HTTP
//! trigger ([`RouteTemplate`], `routes = ["/rooms/{room}"]`) and the timers
//! ([`TimerConfig`], `[[timers]]`), each validated with a message that names
//! the key.

use std::collections::BTreeMap;

use super::cron::Cron;

/// Route templates a service may declare.
pub const MAX_ROUTES: usize = 100;

/// Timers a service may declare.
pub const MAX_TIMERS: usize = 100;

/// Longest timer name, as the model allows.
pub const MAX_TIMER_NAME: usize = 60;

/// Longest timer message, in bytes: the model's 4 KB.
pub const MAX_TIMER_MESSAGE_BYTES: usize = 4096;

/// One segment of a route template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Matches this text, exactly.
    Literal(String),
    /// Matches any one non-empty segment, which becomes the path parameter
    /// of this name.
    Parameter(String),
}

/// A route template of the HTTP trigger, such as `/rooms/{room}`: a path
/// relative to `/http/<service>`, whose `{name}` segments fill the event's
/// `pathParameters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTemplate {
    text: String,
    segments: Vec<Segment>,
}

impl RouteTemplate {
    /// Parses a template: `/`, then segments separated by `/`, each either
    /// text without `{` or `}` or a whole `{name}` (letters, digits, `_`
    /// and `-`; each name once).
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("`{text}` does not begin with `/`"));
        };
        if text.len() > 1024 {
            return Err(format!("`{text}` is longer than 1024 bytes"));
        }
        let mut segments = Vec::new();
        for segment in rest.split('/').filter(|_| !rest.is_empty()) {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let valid = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !valid {
                    return Err(format!(
                        "`{text}`: `{{{name}}}` is not a parameter name (1 to 64 letters, digits, `_` or `-`)"
                    ));
                }
                if segments.contains(&Segment::Parameter(name.to_owned())) {
                    return Err(format!("`{text}`: the parameter `{name}` appears twice"));
                }
                segments.push(Segment::Parameter(name.to_owned()));
            } else if segment.is_empty() || segment.contains(['{', '}']) {
                return Err(format!(
                    "`{text}`: the segment `{segment}` is neither text nor a whole `{{name}}`"
                ));
            } else {
                segments.push(Segment::Literal(segment.to_owned()));
            }
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// The template as written, for the event's `requestContext.path`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The path parameters when `path` (percent-decoded segment by segment)
    /// matches the template.
    pub fn matches(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let rest = path.strip_prefix('/')?;
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut parameters = BTreeMap::new();
        for (segment, part) in self.segments.iter().zip(parts) {
            let part = percent_encoding::percent_decode_str(part).decode_utf8_lossy();
            match segment {
                Segment::Literal(text) if *text == part => {}
                Segment::Parameter(name) if !part.is_empty() => {
                    parameters.insert(name.clone(), part.into_owned());
                }
                _ => return None,
            }
        }
        Some(parameters)
    }
}

/// The first of `routes` that `path` matches, with its parameters.
pub fn match_route<'a>(
    routes: &'a [RouteTemplate],
    path: &str,
) -> Option<(&'a RouteTemplate, BTreeMap<String, String>)> {
    routes
        .iter()
        .find_map(|route| Some((route, route.matches(path)?)))
}

/// One `[[timers]]` entry of `service.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerConfig {
    /// Its name, the event's `TriggerName`: unique in the service.
    pub name: String,
    /// The expression as written.
    pub cron_text: String,
    /// The expression, parsed.
    pub cron: Cron,
    /// The event's `Message`, if any.
    pub message: Option<String>,
}

/// A `[[timers]]` entry as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimer {
    name: String,
    cron: String,
    message: Option<String>,
}

/// Validates the `[[timers]]` table; an error names the entry and its key
/// (`timers[2].cron`) and says what is wrong.
pub(super) fn timers(raw: Vec<RawTimer>) -> Result<Vec<TimerConfig>, (String, String)> {
    if raw.len() > MAX_TIMERS {
        return Err((
            "timers".into(),
            format!("at most {MAX_TIMERS} timers, found {}", raw.len()),
        ));
    }
    let mut timers: Vec<TimerConfig> = Vec::with_capacity(raw.len());
    for (index, timer) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("timers[{index}].{field}");
        if !is_valid_timer_name(&timer.name) {
            return Err((
                key("name"),
                format!(
                    "`{}` is not a timer name: 1 to {MAX_TIMER_NAME} of a-z A-Z 0-9 - _, beginning with a letter",
                    timer.name
                ),
            ));
        }
        if timers.iter().any(|other| other.name == timer.name) {
            return Err((
                key("name"),
                format!("`{}` names another timer already", timer.name),
            ));
        }
        let cron = Cron::parse(&timer.cron).map_err(|error| (key("cron"), error.to_string()))?;
        if cron.next_after(now_unix()).is_none() {
            return Err((
                key("cron"),
                format!(
                    "`{}` never fires again (times are UTC; years end at 2099)",
                    timer.cron
                ),
            ));
        }
        if let Some(message) = &timer.message {
            if message.len() > MAX_TIMER_MESSAGE_BYTES {
                return Err((
                    key("message"),
                    format!(
                        "{} bytes, the limit is {MAX_TIMER_MESSAGE_BYTES}",
                        message.len()
                    ),
                ));
            }
        }
        timers.push(TimerConfig {
            name: timer.name,
            cron_text: timer.cron,
            cron,
            message: timer.message,
        });
    }
    Ok(timers)
}

/// Validates `routes`; an error names the entry (`routes[1]`).
pub(super) fn routes(raw: Vec<String>) -> Result<Vec<RouteTemplate>, (String, String)> {
    if raw.len() > MAX_ROUTES {
        return Err((
            "routes".into(),
            format!("at most {MAX_ROUTES} routes, found {}", raw.len()),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(index, text)| {
            RouteTemplate::parse(text).map_err(|why| (format!("routes[{index}]"), why))
        })
        .collect()
}

/// Seconds since the Unix epoch, now.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// Whether `name` is a timer name the model allows.
fn is_valid_timer_name(name: &str) -> bool {
    (1..=MAX_TIMER_NAME).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_templates_fill_parameters() {
        let rooms = RouteTemplate::parse("/rooms/{room}").unwrap();
        let members = RouteTemplate::parse("/rooms/{room}/members/{id}").unwrap();
        let root = RouteTemplate::parse("/").unwrap();
        assert_eq!(
            rooms.matches("/rooms/kitchen"),
            Some(BTreeMap::from([("room".into(), "kitchen".into())]))
        );
        assert_eq!(
            rooms.matches("/rooms/caf%C3%A9"),
            Some(BTreeMap::from([("room".into(), "café".into())]))
        );
        assert_eq!(rooms.matches("/rooms"), None);
        assert_eq!(rooms.matches("/rooms/"), None);
        assert_eq!(rooms.matches("/rooms/a/b"), None);
        assert_eq!(rooms.matches("/halls/a"), None);
        assert_eq!(members.matches("/rooms/a/members/7").unwrap()["id"], "7");
        assert_eq!(root.matches("/"), Some(BTreeMap::new()));
        assert_eq!(root.matches("/x"), None);
        let routes = [rooms, members];
        let (route, _) = match_route(&routes, "/rooms/a/members/b").unwrap();
        assert_eq!(route.as_str(), "/rooms/{room}/members/{id}");
        assert!(match_route(&routes, "/nowhere").is_none());
    }

    #[test]
    fn bad_route_templates_say_why() {
        for (text, why) in [
            ("rooms", "does not begin"),
            ("/rooms/{}", "not a parameter name"),
            ("/rooms/{a b}", "not a parameter name"),
            ("/{a}/{a}", "appears twice"),
            ("/rooms//x", "neither text"),
            ("/rooms/x{y}", "neither text"),
        ] {
            let error = RouteTemplate::parse(text).unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    fn timer(name: &str, cron: &str, message: Option<&str>) -> RawTimer {
        RawTimer {
            name: name.into(),
            cron: cron.into(),
            message: message.map(str::to_owned),
        }
    }

    #[test]
    fn timer_errors_name_the_entry_and_key() {
        let error = |raw: Vec<RawTimer>| timers(raw).unwrap_err();
        assert_eq!(
            error(vec![timer("1st", "* * * * *", None)]).0,
            "timers[0].name"
        );
        assert_eq!(
            error(vec![timer("", "* * * * *", None)]).0,
            "timers[0].name"
        );
        assert_eq!(
            error(vec![timer(&"a".repeat(61), "* * * * *", None)]).0,
            "timers[0].name"
        );
        assert_eq!(
            error(vec![timer("a.b", "* * * * *", None)]).0,
            "timers[0].name"
        );
        let (key, why) = error(vec![
            timer("EveryDay", "0 15 10 * * MON-FRI *", None),
            timer("EveryDay", "* * * * *", None),
        ]);
        assert_eq!(key, "timers[1].name");
        assert!(why.contains("another timer"), "{why}");
        let (key, why) = error(vec![timer("t", "0 0 25 * * * *", None)]);
        assert_eq!(key, "timers[0].cron");
        assert!(why.starts_with("hour field"), "{why}");
        let long = "x".repeat(4097);
        assert_eq!(
            error(vec![timer("t", "* * * * *", Some(&long))]).0,
            "timers[0].message"
        );
        let (key, why) = error(vec![timer("t", "0 0 0 1 1 * 2019", None)]);
        assert_eq!(key, "timers[0].cron");
        assert!(why.contains("never fires again"), "{why}");
        let ok = timers(vec![timer(
            "Every-day_1",
            "* * * * *",
            Some(&"x".repeat(4096)),
        )])
        .unwrap();
        assert_eq!(ok[0].name, "Every-day_1");
    }
}
