//! A request's draws, kept inline for the one or two quotas most routes have.

use std::ops::{Deref, DerefMut};

use super::Draw;

/// The cells a request draws on and its cost at each, in the route's order:
/// one or two without an allocation, more on the heap.
#[derive(Debug, Clone)]
pub(crate) enum Draws {
    One(Draw),
    Two([Draw; 2]),
    Many(Vec<Draw>),
}

impl Deref for Draws {
    type Target = [Draw];

    fn deref(&self) -> &[Draw] {
        match self {
            Draws::One(draw) => std::slice::from_ref(draw),
            Draws::Two(pair) => pair,
            Draws::Many(all) => all,
        }
    }
}

impl DerefMut for Draws {
    fn deref_mut(&mut self) -> &mut [Draw] {
        match self {
            Draws::One(draw) => std::slice::from_mut(draw),
            Draws::Two(pair) => pair,
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

impl FromIterator<Draw> for Draws {
    fn from_iter<I: IntoIterator<Item = Draw>>(iter: I) -> Self {
        let mut iter = iter.into_iter();
        let Some(first) = iter.next() else {
            return Draws::Many(Vec::new());
        };
        let Some(second) = iter.next() else {
            return Draws::One(first);
        };
        let Some(third) = iter.next() else {
            return Draws::Two([first, second]);
        };
        let mut all = Vec::with_capacity(3 + iter.size_hint().0);
        all.extend([first, second, third]);
        all.extend(iter);
        Draws::Many(all)
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::engine::CellKey;

    fn draws(n: usize) -> Draws {
        (0..n)
            .map(|quota| Draw::new(CellKey { quota, key: None }, NonZeroU32::MIN))
            .collect()
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
            let inline = matches!(all, Draws::One(_) | Draws::Two(_));
            assert_eq!(inline, (1..=2).contains(&n), "{n} draws");
        }
    }
}
