//! The engine's cells, found by quota and then by key: an unkeyed quota's
//! cell by its index alone, a keyed quota's in that quota's own map, looked
//! up with the request's key as borrowed text (no key made per request).

use std::collections::HashMap;
use std::ops::Index;
use std::sync::Arc;

use super::cell::{Cell, CellHash, CellKey};

pub(super) struct Cells {
    /// Each unkeyed quota's one cell, by quota index, made on first use and
    /// never swept.
    unkeyed: Vec<Option<Cell>>,
    /// Each keyed quota's cells, by quota index, then key.
    keyed: Vec<HashMap<Arc<str>, Cell, CellHash>>,
}

impl Cells {
    /// No cells yet, for `quotas` quotas.
    pub(super) fn new(quotas: usize) -> Self {
        Cells {
            unkeyed: (0..quotas).map(|_| None).collect(),
            keyed: (0..quotas).map(|_| HashMap::default()).collect(),
        }
    }

    /// The cell of `quota` for `key`, if it is there.
    #[inline]
    pub(super) fn find_mut(&mut self, quota: usize, key: Option<&str>) -> Option<&mut Cell> {
        match key {
            None => self.unkeyed.get_mut(quota)?.as_mut(),
            Some(key) => self.keyed.get_mut(quota)?.get_mut(key),
        }
    }

    /// The cell of `quota` for `key`, if it is there, to read.
    #[inline]
    pub(super) fn find(&self, quota: usize, key: Option<&str>) -> Option<&Cell> {
        match key {
            None => self.unkeyed.get(quota)?.as_ref(),
            Some(key) => self.keyed.get(quota)?.get(key),
        }
    }

    #[inline]
    pub(super) fn get(&self, key: &CellKey) -> Option<&Cell> {
        self.find(key.quota, key.key.as_deref())
    }

    #[inline]
    pub(super) fn get_mut(&mut self, key: &CellKey) -> Option<&mut Cell> {
        self.find_mut(key.quota, key.key.as_deref())
    }

    /// Adds `cell` as `quota`'s for `key` when there is none (a cell
    /// already there stays, with its queue and state); the cell keeps its
    /// key, which draws on it share.
    pub(super) fn insert(
        &mut self,
        quota: usize,
        key: Option<Arc<str>>,
        mut cell: Cell,
    ) -> &mut Cell {
        cell.key = key.clone();
        match key {
            None => self.unkeyed[quota].get_or_insert(cell),
            Some(key) => self.keyed[quota].entry(key).or_insert(cell),
        }
    }

    /// Keeps the keyed cells `keep` holds to; unkeyed cells always stay.
    pub(super) fn retain_keyed(&mut self, mut keep: impl FnMut(&Cell) -> bool) {
        for cells in &mut self.keyed {
            cells.retain(|_, cell| keep(cell));
        }
    }

    /// Every cell with its quota's index.
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &Cell)> {
        let unkeyed = self.unkeyed.iter().enumerate();
        let keyed = self.keyed.iter().enumerate();
        unkeyed
            .filter_map(|(quota, cell)| Some((quota, cell.as_ref()?)))
            .chain(keyed.flat_map(|(quota, cells)| cells.values().map(move |cell| (quota, cell))))
    }
}

impl Index<&CellKey> for Cells {
    type Output = Cell;

    #[inline]
    fn index(&self, key: &CellKey) -> &Cell {
        self.get(key).expect("the cell of a live draw")
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::Rate;
    use crate::config::CellParams;
    use crate::metrics::CellMetrics;

    fn cell(queued: u64) -> Cell {
        let params = CellParams {
            rate: Rate::per_second(NonZeroU32::MIN),
            burst: NonZeroU32::MIN,
            interval: Duration::from_secs(1),
        };
        let metrics = CellMetrics::new("q", None, false);
        let mut cell = Cell::new(&params, 1.0, None, 0.0, Instant::now(), metrics);
        cell.queue.push_back(queued);
        cell
    }

    #[test]
    fn cells_are_found_by_quota_and_key_text_and_the_first_one_stays() {
        let mut cells = Cells::new(2);
        assert!(cells.find_mut(0, None).is_none());
        cells.insert(0, None, cell(1));
        cells.insert(0, None, cell(2));
        cells.insert(1, Some(Arc::from("m")), cell(3));
        cells.insert(1, Some(Arc::from("m")), cell(4));
        // The cell already there keeps its queue.
        assert_eq!(cells.find_mut(0, None).unwrap().queue.front(), Some(&1));
        let keyed = cells.find_mut(1, Some("m")).unwrap();
        assert_eq!(
            (keyed.queue.front(), keyed.key.as_deref()),
            (Some(&3), Some("m"))
        );
        // A key is its text, whichever `Arc` holds it; quotas do not mix.
        let key = CellKey {
            quota: 1,
            key: Some(Arc::from("m")),
        };
        assert_eq!(cells[&key].queue.front(), Some(&3));
        assert!(cells.find_mut(0, Some("m")).is_none());
        assert!(cells.find_mut(1, None).is_none());
        assert!(cells.find_mut(2, None).is_none());
        // Sweeping drops keyed cells only.
        cells.retain_keyed(|_| false);
        assert!(cells.find_mut(1, Some("m")).is_none());
        let all: Vec<usize> = cells.iter().map(|(quota, _)| quota).collect();
        assert_eq!(all, [0]);
    }
}
