//! Series identity: the four levels of the sales hierarchy.

use serde::{Deserialize, Serialize};

/// A level of the hierarchy. Every accepted event counts once at each level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// One SKU in one store; key `"<sku>|<store>"`.
    SkuStore,
    /// One category in one store; key `"<category>|<store>"`.
    CategoryStore,
    /// One store or channel; key `"<store>"`.
    Store,
    /// Everything; key `"total"`.
    Total,
}

impl Level {
    /// All levels, finest first.
    pub const ALL: [Level; 4] = [
        Level::SkuStore,
        Level::CategoryStore,
        Level::Store,
        Level::Total,
    ];

    /// The wire name (`sku_store`, `category_store`, `store`, `total`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::SkuStore => "sku_store",
            Level::CategoryStore => "category_store",
            Level::Store => "store",
            Level::Total => "total",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Level> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// Compact numeric code used in Arrow columns (0 = finest).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Inverse of [`Level::code`].
    pub fn from_code(c: u8) -> Option<Level> {
        Self::ALL.get(c as usize).copied()
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The key of the total series.
pub const TOTAL_KEY: &str = "total";

/// Build the key of a series at `level` from an event's fields.
pub fn series_key(level: Level, sku: &str, store: &str, category: &str) -> String {
    match level {
        Level::SkuStore => format!("{sku}|{store}"),
        Level::CategoryStore => format!("{category}|{store}"),
        Level::Store => store.to_string(),
        Level::Total => TOTAL_KEY.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_names_and_codes_round_trip() {
        for l in Level::ALL {
            assert_eq!(Level::parse(l.as_str()), Some(l));
            assert_eq!(Level::from_code(l.code()), Some(l));
        }
        assert_eq!(Level::from_code(9), None);
        assert_eq!(
            series_key(Level::CategoryStore, "s1", "web-uk", "toys"),
            "toys|web-uk"
        );
    }
}
