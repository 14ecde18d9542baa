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

    #[inline]
    pub(super) fn get(&self, key: &CellKey) -> Option<&Cell> {
        match key.key.as_deref() {
            None => self.unkeyed.get(key.quota)?.as_ref(),
            Some(k) => self.keyed.get(key.quota)?.get(k),
        }
    }

    #[inline]
    pub(super) fn get_mut(&mut self, key: &CellKey) -> Option<&mut Cell> {
        self.find_mut(key.quota, key.key.as_deref())
    }

    /// Adds `cell` as `quota`'s for `key` (there is none yet); the cell
    /// keeps its key, which draws on it share.
    pub(super) fn insert(
        &mut self,
        quota: usize,
        key: Option<Arc<str>>,
        mut cell: Cell,
    ) -> &mut Cell {
        cell.key = key.clone();
        match key {
            None => self.unkeyed[quota].insert(cell),
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
