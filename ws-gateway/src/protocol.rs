//! Client requests and subscription filters (`docs/websocket.md`).

use salescast_alerting::Severity;
use salescast_stream_core::Level;
use serde::{Deserialize, Serialize};

use crate::Update;

/// Which stream a subscription is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Closed windows with their forecasts.
    Windows,
    /// Alerts.
    Alerts,
}

/// A subscription filter: level (`*` for all), key pattern (`*` matches any
/// run of characters) and, for alerts, the lowest severity wanted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Channel.
    #[serde(default = "windows")]
    pub channel: Channel,
    /// Level name or `*`.
    #[serde(default = "star")]
    pub level: String,
    /// Key pattern.
    #[serde(default = "star")]
    pub key: String,
    /// Lowest alert severity (alerts channel only).
    #[serde(default)]
    pub min_severity: Option<Severity>,
}

fn star() -> String {
    "*".into()
}

fn windows() -> Channel {
    Channel::Windows
}

/// A message from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClientRequest {
    /// Add a subscription; the reply carries its id.
    Subscribe(Filter),
    /// Remove a subscription by id.
    Unsubscribe {
        /// The id from the `subscribed` reply.
        id: u64,
    },
}

/// Glob match where `*` matches any run of characters.
pub(crate) fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

impl Filter {
    /// Check the filter is well formed.
    pub fn validate(&self) -> Result<(), String> {
        if self.level != "*" && Level::parse(&self.level).is_none() {
            return Err(format!(
                "unknown level {:?}: use sku_store, category_store, store, total or *",
                self.level
            ));
        }
        Ok(())
    }

    /// Whether the filter names exactly one series (no wildcard).
    pub fn exact(&self) -> Option<(Level, &str)> {
        if self.key.contains('*') {
            return None;
        }
        Level::parse(&self.level).map(|l| (l, self.key.as_str()))
    }

    pub(crate) fn matches(&self, u: &Update) -> bool {
        let channel_ok = match (self.channel, u.severity) {
            (Channel::Windows, None) => true,
            (Channel::Alerts, Some(sev)) => self.min_severity.is_none_or(|m| sev >= m),
            _ => false,
        };
        channel_ok
            && (self.level == "*" || self.level == u.level.as_str())
            && glob(&self.key, &u.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches() {
        assert!(glob("*", "anything"));
        assert!(glob("web-*", "web-uk"));
        assert!(!glob("web-*", "app-uk"));
        assert!(glob("*|web-uk", "sku1|web-uk"));
        assert!(glob("s*|*-uk", "sku1|web-uk"));
        assert!(!glob("s*|*-de", "sku1|web-uk"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn requests_parse() {
        let r: ClientRequest =
            serde_json::from_str(r#"{"op":"subscribe","level":"store","key":"web-uk"}"#).unwrap();
        assert_eq!(
            r,
            ClientRequest::Subscribe(Filter {
                channel: Channel::Windows,
                level: "store".into(),
                key: "web-uk".into(),
                min_severity: None
            })
        );
        let r: ClientRequest = serde_json::from_str(
            r#"{"op":"subscribe","channel":"alerts","min_severity":"medium"}"#,
        )
        .unwrap();
        let ClientRequest::Subscribe(f) = r else {
            panic!()
        };
        let alert = |sev| Update {
            level: Level::Store,
            key: "x".into(),
            severity: Some(sev),
            text: "".into(),
        };
        assert!(f.matches(&alert(Severity::High)));
        assert!(!f.matches(&alert(Severity::Low)));
        assert!(serde_json::from_str::<ClientRequest>(r#"{"op":"nope"}"#).is_err());
        let bad = Filter {
            level: "planet".into(),
            ..f
        };
        assert!(bad.validate().is_err());
    }
}
