//! A request's draws (and what it asks of each quota before them), kept
//! inline for the one or two quotas most routes have.

use std::borrow::Cow;
use std::num::NonZeroU32;
use std::ops::{Deref, DerefMut};

use tokio::time::Instant;

use super::cell::{Cell, CellKey};

/// What a request asks of one quota of its route: the key (borrowed from
/// the request where it can be) and the cost. Admission finds the cell.
#[derive(Debug)]
pub(crate) struct Ask<'a> {
    pub(crate) quota: usize,
    pub(crate) key: Option<Cow<'a, str>>,
    pub(crate) cost: NonZeroU32,
}

/// A cell a request draws on and its cost there; once granted, also what
/// its answer is read against. A request keeps one list of these from
/// admission to its answer (no second list at the grant).
#[derive(Debug, Clone)]
pub(crate) struct Draw {
    pub(crate) key: CellKey,
    pub(crate) cost: NonZeroU32,
    /// The cell's learning epoch at the grant.
    pub(super) epoch: u64,
    /// The cell's [`syncs`](cell::Cell::syncs) at the grant.
    pub(super) syncs: u64,
}

impl Draw {
    pub(crate) fn new(key: CellKey, cost: NonZeroU32) -> Self {
        Draw {
            key,
            cost,
            epoch: 0,
            syncs: 0,
        }
    }

    /// Notes the grant on its cell: a learning cell hears of it, and the
    /// draw keeps the cell's epoch and syncs at that moment.
    pub(super) fn granted(&mut self, cell: &mut Cell, decision: Instant) {
        let cost = f64::from(self.cost.get());
        cell.note_grant(cost);
        self.epoch = cell.learner.as_mut().map_or(0, |l| {
            l.granted(decision, cost);
            l.epoch
        });
        self.syncs = cell.syncs;
    }
}

/// A request's items, one per quota of its route, in the route's order:
/// one or two without an allocation, more on the heap.
#[derive(Debug, Clone)]
pub(crate) enum Few<T> {
    One(T),
    Two([T; 2]),
    Many(Vec<T>),
}

/// The cells a request draws on and its cost at each.
pub(crate) type Draws = Few<Draw>;

impl<T> Deref for Few<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            Few::One(draw) => std::slice::from_ref(draw),
            Few::Two(pair) => pair,
            Few::Many(all) => all,
        }
    }
}

impl<T> DerefMut for Few<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Few::One(draw) => std::slice::from_mut(draw),
            Few::Two(pair) => pair,
            Few::Many(all) => all,
        }
    }
}

impl<'a, T> IntoIterator for &'a Few<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, T> IntoIterator for &'a mut Few<T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl<T> Few<T> {
    /// One item for each of `items`, made by `make` in order; the first
    /// error stops it.
    pub(crate) fn try_from_each<S, E>(
        items: &[S],
        mut make: impl FnMut(&S) -> Result<T, E>,
    ) -> Result<Self, E> {
        Ok(match items {
            [one] => Few::One(make(one)?),
            [first, second] => Few::Two([make(first)?, make(second)?]),
            _ => Few::Many(items.iter().map(make).collect::<Result<_, _>>()?),
        })
    }

    /// One item for each of `items`, made by `make` in order.
    pub(crate) fn from_each<S>(items: &[S], mut make: impl FnMut(&S) -> T) -> Self {
        Self::try_from_each(items, |item| Ok::<_, std::convert::Infallible>(make(item)))
            .unwrap_or_else(|never| match never {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(n: usize) -> Draws {
        let quotas: Vec<usize> = (0..n).collect();
        Few::from_each(&quotas, |&quota| {
            Draw::new(CellKey { quota, key: None }, NonZeroU32::MIN)
        })
    }

    #[test]
    fn draws_keep_every_cell_in_order_however_many() {
        for n in 0..6 {
            let mut all = draws(n);
            let quotas: Vec<usize> = all.iter().map(|d| d.key.quota).collect();
            assert_eq!(quotas, (0..n).collect::<Vec<_>>(), "{n} draws");
            for draw in all.iter_mut() {
                draw.cost = NonZeroU32::new(7).unwrap();
            }
            assert!(all.iter().all(|d| d.cost.get() == 7), "{n} draws");
            let inline = matches!(all, Few::One(_) | Few::Two(_));
            assert_eq!(inline, (1..=2).contains(&n), "{n} draws");
        }
    }

    #[test]
    fn the_first_error_stops_the_making() {
        let mut made = Vec::new();
        let tried = Few::try_from_each(&[1, 2, 3, 4], |&n| {
            made.push(n);
            if n == 3 { Err(n) } else { Ok(n) }
        });
        assert_eq!(tried.err(), Some(3));
        assert_eq!(made, [1, 2, 3]);
        let pair = Few::try_from_each(&[1, 2], |&n| Ok::<_, ()>(n * 10)).unwrap();
        assert_eq!(&*pair, [10, 20]);
        assert!(matches!(pair, Few::Two(_)));
    }
}
