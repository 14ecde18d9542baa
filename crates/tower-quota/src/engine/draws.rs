//! A request's draws (and what it asks of each quota before them), kept
//! inline for the one quota most routes have.

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
    pub(super) epoch: u32,
    /// The cell's [`syncs`](super::cell::Cell::syncs) at the grant.
    pub(super) syncs: u32,
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
/// one or two without an allocation, more on the heap. For what is made
/// and dropped within a call (asks); what a request keeps while it waits
/// and until its answer is [`Draws`].
#[derive(Debug, Clone)]
pub(crate) enum Few<T> {
    One(T),
    Two([T; 2]),
    Many(Vec<T>),
}

impl<T> Deref for Few<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            Few::One(one) => std::slice::from_ref(one),
            Few::Two(pair) => pair,
            Few::Many(all) => all,
        }
    }
}

impl<T> Few<T> {
    /// One item for each of `items`, made by `make` in order.
    pub(crate) fn from_each<S>(items: &[S], mut make: impl FnMut(&S) -> T) -> Self {
        match items {
            [one] => Few::One(make(one)),
            [first, second] => Few::Two([make(first), make(second)]),
            _ => Few::Many(items.iter().map(make).collect()),
        }
    }
}

/// The cells a request draws on and its cost at each: one without an
/// allocation (most routes have one quota), more on the heap. Kept in
/// every waiter and response future, so one draw (40 bytes) inline, not two.
#[derive(Debug, Clone)]
pub(crate) enum Draws {
    One(Draw),
    Many(Vec<Draw>),
}

impl Deref for Draws {
    type Target = [Draw];

    fn deref(&self) -> &[Draw] {
        match self {
            Draws::One(one) => std::slice::from_ref(one),
            Draws::Many(all) => all,
        }
    }
}

impl DerefMut for Draws {
    fn deref_mut(&mut self) -> &mut [Draw] {
        match self {
            Draws::One(one) => std::slice::from_mut(one),
            Draws::Many(all) => all,
        }
    }
}

impl<'a> IntoIterator for &'a Draws {
    type Item = &'a Draw;
    type IntoIter = std::slice::Iter<'a, Draw>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a> IntoIterator for &'a mut Draws {
    type Item = &'a mut Draw;
    type IntoIter = std::slice::IterMut<'a, Draw>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl Draws {
    /// One draw for each of `asks`, made by `make` in order; the first
    /// error stops it.
    #[inline]
    pub(crate) fn try_from_each<S, E>(
        asks: &[S],
        mut make: impl FnMut(&S) -> Result<Draw, E>,
    ) -> Result<Self, E> {
        Ok(match asks {
            [one] => Draws::One(make(one)?),
            _ => Draws::Many(asks.iter().map(make).collect::<Result<_, _>>()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(n: usize) -> Draws {
        let quotas: Vec<usize> = (0..n).collect();
        Draws::try_from_each(&quotas, |&quota| {
            Ok::<_, ()>(Draw::new(CellKey { quota, key: None }, NonZeroU32::MIN))
        })
        .unwrap()
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
            assert_eq!(matches!(all, Draws::One(_)), n == 1, "{n} draws");
        }
        for n in 0..6 {
            let items: Vec<usize> = (0..n).collect();
            let few = Few::from_each(&items, |&i| i * 10);
            assert_eq!(
                &*few,
                items.iter().map(|i| i * 10).collect::<Vec<_>>(),
                "{n} items"
            );
            assert_eq!(
                matches!(few, Few::One(_) | Few::Two(_)),
                (1..=2).contains(&n)
            );
        }
    }

    #[test]
    fn the_first_error_stops_the_making() {
        let mut made = Vec::new();
        let draw = |quota| Draw::new(CellKey { quota, key: None }, NonZeroU32::MIN);
        let tried = Draws::try_from_each(&[1, 2, 3, 4], |&n| {
            made.push(n);
            if n == 3 { Err(n) } else { Ok(draw(n)) }
        });
        assert_eq!(tried.err(), Some(3));
        assert_eq!(made, [1, 2, 3]);
        let one = Draws::try_from_each(&[5], |&n| Ok::<_, ()>(draw(n))).unwrap();
        assert!(matches!(one, Draws::One(ref d) if d.key.quota == 5));
    }
}
