//! Version vectors: which user changed a file how many times.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How two version vectors relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionOrdering {
    /// The same history.
    Equal,
    /// The left one is an ancestor of the right one: the right one is newer.
    Before,
    /// The left one descends from the right one: the left one is newer.
    After,
    /// Each has changes the other has not seen: a conflict.
    Concurrent,
}

/// A version vector: for each user id, how many changes of a file that user made.
///
/// ```
/// use duet_share::sync::{VersionOrdering, VersionVector};
/// let mut a = VersionVector::new();
/// a.bump("alice");
/// let mut b = a.clone();
/// b.bump("bob");
/// assert_eq!(a.compare(&b), VersionOrdering::Before);
/// a.bump("alice");
/// assert_eq!(a.compare(&b), VersionOrdering::Concurrent);
/// a.merge(&b);
/// assert_eq!(a.compare(&b), VersionOrdering::After);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VersionVector(BTreeMap<String, u64>);

impl VersionVector {
    /// An empty vector (no change seen).
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter of `user` (0 when absent).
    pub fn get(&self, user: &str) -> u64 {
        self.0.get(user).copied().unwrap_or(0)
    }

    /// Records one more change by `user`.
    pub fn bump(&mut self, user: &str) {
        let counter = self.0.entry(user.to_string()).or_insert(0);
        *counter = counter.saturating_add(1);
    }

    /// Takes, for every user, the larger of the two counters.
    pub fn merge(&mut self, other: &VersionVector) {
        for (user, &count) in &other.0 {
            let mine = self.0.entry(user.clone()).or_insert(0);
            *mine = (*mine).max(count);
        }
    }

    /// A copy merged with `other`.
    pub fn merged(&self, other: &VersionVector) -> VersionVector {
        let mut out = self.clone();
        out.merge(other);
        out
    }

    /// True when no user has a counter above zero.
    pub fn is_empty(&self) -> bool {
        self.0.values().all(|&c| c == 0)
    }

    /// How `self` relates to `other`.
    pub fn compare(&self, other: &VersionVector) -> VersionOrdering {
        let mut less = false;
        let mut greater = false;
        for user in self.0.keys().chain(other.0.keys()) {
            let (a, b) = (self.get(user), other.get(user));
            less |= a < b;
            greater |= a > b;
        }
        match (less, greater) {
            (false, false) => VersionOrdering::Equal,
            (true, false) => VersionOrdering::Before,
            (false, true) => VersionOrdering::After,
            (true, true) => VersionOrdering::Concurrent,
        }
    }

    /// The users and their counters, in user order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(u, &c)| (u.as_str(), c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(pairs: &[(&str, u64)]) -> VersionVector {
        VersionVector(pairs.iter().map(|(u, c)| (u.to_string(), *c)).collect())
    }

    #[test]
    fn compare_covers_all_cases() {
        assert_eq!(vv(&[]).compare(&vv(&[("a", 0)])), VersionOrdering::Equal);
        assert_eq!(
            vv(&[("a", 1)]).compare(&vv(&[("a", 2)])),
            VersionOrdering::Before
        );
        assert_eq!(
            vv(&[("a", 2), ("b", 1)]).compare(&vv(&[("a", 2)])),
            VersionOrdering::After
        );
        assert_eq!(
            vv(&[("a", 2)]).compare(&vv(&[("a", 1), ("b", 1)])),
            VersionOrdering::Concurrent
        );
    }

    #[test]
    fn merge_takes_maximum() {
        let mut a = vv(&[("a", 3), ("b", 1)]);
        a.merge(&vv(&[("b", 4), ("c", 1)]));
        assert_eq!(a, vv(&[("a", 3), ("b", 4), ("c", 1)]));
    }
}
