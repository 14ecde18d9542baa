//! A point-in-time view of the limiter, for metrics.

use tokio::time::Instant;

use crate::adaptive::PaceSource;

/// The state of every limiter cell at one instant.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Snapshot {
    /// When the snapshot was taken.
    pub at: Instant,
    /// One entry per quota (and per key of keyed quotas), sorted by quota and key.
    pub cells: Vec<CellSnapshot>,
}

/// One quota (or one key of a keyed quota).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CellSnapshot {
    /// The quota's name.
    pub quota: String,
    /// The key, for keyed quotas (header keys appear hashed).
    pub key: Option<String>,
    /// Callers waiting in the queue.
    pub queued: usize,
    /// The earliest instant one unit could be granted (ignoring the queue).
    pub next_free: Instant,
    /// Until when server feedback holds this cell, if it does.
    pub hold_until: Option<Instant>,
    /// The pace in force, in units per second before the safety margin:
    /// the configured rate, or what the cell learned.
    pub pace: f64,
    /// Where the pace comes from.
    pub source: PaceSource,
    /// When a learning cell's pace last changed (`None`: never, or static).
    pub changed_at: Option<Instant>,
}

impl Snapshot {
    /// The cell of `quota` (and `key`), if it exists.
    pub fn cell(&self, quota: &str, key: Option<&str>) -> Option<&CellSnapshot> {
        self.cells
            .iter()
            .find(|c| c.quota == quota && c.key.as_deref() == key)
    }
}
