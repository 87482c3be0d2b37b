//! Postings lists (strictly increasing lists of series IDs): their set
//! operations, and Prometheus's postings-for-matchers algorithm over any index
//! that implements [`PostingsIndex`] (the head's and a block's).
//!
//! Every set operation takes sorted, duplicate-free slices and returns a sorted,
//! duplicate-free `Vec`; on unsorted input the result is unspecified (but there is
//! no panic).

use strata_model::{MatchOp, Matcher};

/// An index that maps label pairs to postings lists.
pub(crate) trait PostingsIndex {
    /// A series ID.
    type Ref: Ord + Copy;
    /// The values of one label name, with whatever locates their postings.
    type Values: ?Sized;
    /// Why postings could not be read.
    type Error;

    /// The values of label `name`, `None` when no series has the label (and
    /// for the empty name).
    fn values(&self, name: &str) -> Option<&Self::Values>;
    /// The postings of `value` among `values` (empty when it is not there).
    fn postings_of(
        &self,
        values: &Self::Values,
        value: &str,
    ) -> Result<Vec<Self::Ref>, Self::Error>;
    /// The union of the postings of each of `wanted` among `values` (a
    /// regular expression that is a set of alternatives).
    fn union_of(
        &self,
        values: &Self::Values,
        wanted: &[String],
    ) -> Result<Vec<Self::Ref>, Self::Error>;
    /// The union of the postings of the `values` that `keep` accepts.
    fn union_where(
        &self,
        values: &Self::Values,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<Self::Ref>, Self::Error>;
    /// Every series of the index.
    fn all(&self) -> Result<Vec<Self::Ref>, Self::Error>;
}

/// Prometheus's `PostingsForMatchers`: the series matching all `matchers` (all
/// series for none), sorted, where a series lacking a label has it as `""`.
/// Matchers that reject `""` contribute the union of their matching values'
/// postings to an intersection; matchers that accept `""` (so also select
/// series lacking the label) subtract the postings of the values they reject.
/// With no intersecting matcher the intersection starts from all series.
pub(crate) fn for_matchers<I: PostingsIndex>(
    index: &I,
    matchers: &[Matcher],
) -> Result<Vec<I::Ref>, I::Error> {
    let mut include: Vec<Vec<I::Ref>> = Vec::new();
    let mut exclude: Vec<Vec<I::Ref>> = Vec::new();
    for m in matchers {
        if m.op == MatchOp::RegexMatch && m.value == ".*" {
            continue;
        }
        let values = index.values(&m.name);
        if m.matches_empty() {
            // No series has the label: all of them have "" and match.
            let Some(values) = values else { continue };
            let rejected = match m.op {
                // Accepts "" so its value is not ""; rejects exactly its value.
                MatchOp::NotEqual => index.postings_of(values, &m.value)?,
                // `name=""`: rejects every present value.
                MatchOp::Equal => index.union_where(values, |_| true)?,
                MatchOp::RegexMatch | MatchOp::RegexNoMatch => {
                    index.union_where(values, |v| !m.matches(v))?
                }
            };
            if !rejected.is_empty() {
                exclude.push(rejected);
            }
        } else {
            let Some(values) = values else {
                return Ok(Vec::new());
            };
            let accepted = match (m.op, m.set_matches()) {
                (MatchOp::Equal, _) => index.postings_of(values, &m.value)?,
                (MatchOp::RegexMatch, Some(set)) => index.union_of(values, &set)?,
                _ => index.union_where(values, |v| m.matches(v))?,
            };
            if accepted.is_empty() {
                return Ok(Vec::new());
            }
            include.push(accepted);
        }
    }
    let mut result = if include.is_empty() {
        index.all()?
    } else {
        let lists: Vec<&[I::Ref]> = include.iter().map(Vec::as_slice).collect();
        intersect_many(&lists)
    };
    for rejected in &exclude {
        if result.is_empty() {
            break;
        }
        result = subtract(&result, rejected);
    }
    Ok(result)
}

/// Elements present in both lists.
pub fn intersect<T: Ord + Copy>(a: &[T], b: &[T]) -> Vec<T> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(small.len());
    if small.is_empty() {
        return out;
    }
    // Far apart in size: look each element of the short list up in the long one
    // (galloping forward), instead of walking the long list.
    if large.len() / small.len() >= 16 {
        let mut rest = large;
        for &x in small {
            let skip = gallop(rest, x);
            rest = &rest[skip..];
            match rest.first() {
                Some(&y) if y == x => {
                    out.push(x);
                    rest = &rest[1..];
                }
                Some(_) => {}
                None => break,
            }
        }
        return out;
    }
    let (mut i, mut j) = (0, 0);
    while i < small.len() && j < large.len() {
        match small[i].cmp(&large[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(small[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Elements present in either list.
pub fn union<T: Ord + Copy>(a: &[T], b: &[T]) -> Vec<T> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Elements of `a` that are not in `b`.
pub fn subtract<T: Ord + Copy>(a: &[T], b: &[T]) -> Vec<T> {
    let mut out = Vec::with_capacity(a.len());
    let mut rest = b;
    for &x in a {
        let skip = gallop(rest, x);
        rest = &rest[skip..];
        if rest.first() != Some(&x) {
            out.push(x);
        }
    }
    out
}

/// Elements present in any of the lists.
pub fn union_many<T: Ord + Copy>(lists: &[&[T]]) -> Vec<T> {
    match lists {
        [] => Vec::new(),
        [one] => one.to_vec(),
        [a, b] => union(a, b),
        _ => {
            let mut out: Vec<T> = Vec::with_capacity(lists.iter().map(|l| l.len()).sum());
            for l in lists {
                out.extend_from_slice(l);
            }
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

/// Elements present in every list; no lists gives an empty result.
pub fn intersect_many<T: Ord + Copy>(lists: &[&[T]]) -> Vec<T> {
    let mut sorted: Vec<&[T]> = lists.to_vec();
    sorted.sort_by_key(|l| l.len());
    let Some((first, rest)) = sorted.split_first() else {
        return Vec::new();
    };
    let mut acc = first.to_vec();
    for l in rest {
        if acc.is_empty() {
            break;
        }
        acc = intersect(&acc, l);
    }
    acc
}

/// The number of leading elements of `list` that are smaller than `x`, found by
/// exponential then binary search (cheap when the answer is small).
fn gallop<T: Ord + Copy>(list: &[T], x: T) -> usize {
    let mut bound = 1;
    while bound < list.len() && list[bound - 1] < x {
        bound *= 2;
    }
    let end = bound.min(list.len());
    let start = bound / 2;
    start + list[start..end].partition_point(|&y| y < x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn set(v: &[u32]) -> BTreeSet<u32> {
        v.iter().copied().collect()
    }

    #[test]
    fn small_examples() {
        assert_eq!(intersect(&[1, 3, 5, 7], &[3, 4, 5]), vec![3, 5]);
        assert_eq!(union(&[1, 3], &[2, 3, 9]), vec![1, 2, 3, 9]);
        assert_eq!(subtract(&[1, 2, 3, 4], &[2, 4, 6]), vec![1, 3]);
        assert_eq!(
            union_many(&[&[1, 5][..], &[2][..], &[5, 7][..]]),
            vec![1, 2, 5, 7]
        );
        assert_eq!(intersect_many::<u32>(&[]), Vec::<u32>::new());
        assert_eq!(
            intersect_many(&[&[1, 2, 3][..], &[2, 3][..], &[3][..]]),
            vec![3]
        );
        let long: Vec<u32> = (0..1000).collect();
        assert_eq!(intersect(&[5, 500, 999, 2000], &long), vec![5, 500, 999]);
    }

    proptest! {
        #[test]
        fn matches_set_semantics(
            a in proptest::collection::btree_set(0u32..2000, 0..300),
            b in proptest::collection::btree_set(0u32..2000, 0..30),
        ) {
            let av: Vec<u32> = a.iter().copied().collect();
            let bv: Vec<u32> = b.iter().copied().collect();
            prop_assert_eq!(set(&intersect(&av, &bv)), a.intersection(&b).copied().collect::<BTreeSet<_>>());
            prop_assert_eq!(intersect(&av, &bv), intersect(&bv, &av));
            prop_assert_eq!(set(&union(&av, &bv)), a.union(&b).copied().collect::<BTreeSet<_>>());
            prop_assert_eq!(set(&subtract(&av, &bv)), a.difference(&b).copied().collect::<BTreeSet<_>>());
            prop_assert_eq!(set(&subtract(&bv, &av)), b.difference(&a).copied().collect::<BTreeSet<_>>());
            let all = union_many(&[&av[..], &bv[..], &av[..]]);
            prop_assert!(all.windows(2).all(|w| w[0] < w[1]));
            prop_assert_eq!(set(&all), a.union(&b).copied().collect::<BTreeSet<_>>());
        }
    }
}
