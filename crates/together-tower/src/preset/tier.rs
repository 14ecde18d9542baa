//! Together's tiers and their names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Together's tiers (the historic table of chat, embeddings and images
/// limits; see [`Preset::tier`](crate::Preset::tier)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tier {
    /// Chat 60/min, embeddings 3,000/min, images 1/min.
    Free,
    /// Chat 600/min and 180,000 tokens/min, embeddings 3,000/min, images 5/min.
    Tier1,
    /// Chat 1,800/min, embeddings 5,000/min, images 10/min.
    Tier2,
    /// Chat 3,000/min, embeddings 5,000/min, images 15/min.
    Tier3,
    /// Chat 4,500/min, embeddings 10,000/min, images 20/min.
    Tier4,
    /// Chat 6,000/min, embeddings 10,000/min, images 50/min.
    Tier5,
}

impl Tier {
    /// (chat requests, embeddings requests, images) per minute.
    pub(super) fn table(self) -> (u32, u32, u32) {
        match self {
            Tier::Free => (60, 3000, 1),
            Tier::Tier1 => (600, 3000, 5),
            Tier::Tier2 => (1800, 5000, 10),
            Tier::Tier3 => (3000, 5000, 15),
            Tier::Tier4 => (4500, 10000, 20),
            Tier::Tier5 => (6000, 10000, 50),
        }
    }

    /// The tiers, lowest first.
    pub const ALL: [Tier; 6] = [
        Tier::Free,
        Tier::Tier1,
        Tier::Tier2,
        Tier::Tier3,
        Tier::Tier4,
        Tier::Tier5,
    ];

    /// The tier's name: `free`, `tier1` .. `tier5` (what [`Display`](fmt::Display)
    /// writes and a preset built from the tier is called).
    pub fn name(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Tier1 => "tier1",
            Tier::Tier2 => "tier2",
            Tier::Tier3 => "tier3",
            Tier::Tier4 => "tier4",
            Tier::Tier5 => "tier5",
        }
    }
}

/// Reads a tier in any of the spellings people use: `free`, `tier1`,
/// `tier-1`, `Tier 1`, `tier_1`, or just `1`.
///
/// ```
/// use together_tower::Tier;
///
/// for text in ["tier-1", "tier1", "Tier 1", "1"] {
///     assert_eq!(text.parse::<Tier>().unwrap(), Tier::Tier1);
/// }
/// assert!("tier-9".parse::<Tier>().unwrap_err().to_string().contains("tier5"));
/// ```
impl FromStr for Tier {
    type Err = UnknownTier;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let folded = text
            .trim()
            .to_ascii_lowercase()
            .replace(['-', '_', ' '], "");
        let number = folded.strip_prefix("tier").unwrap_or(&folded);
        Tier::ALL
            .into_iter()
            .find(|t| t.name() == folded || t.name().strip_prefix("tier") == Some(number))
            .ok_or_else(|| UnknownTier(text.to_owned()))
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Tier {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Tier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A tier name that is none of Together's tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTier(String);

impl fmt::Display for UnknownTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown tier {:?}: use free, tier1, tier2, tier3, tier4 or tier5 \
             (tier-1 and 1 are read too)",
            self.0
        )
    }
}

impl std::error::Error for UnknownTier {}
