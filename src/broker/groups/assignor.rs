//! The server-side assignors of KIP-848, by Kafka's names: `uniform` (balanced, and sticky
//! to the previous target) and `range` (contiguous ranges per topic). Pure functions from
//! the members' subscriptions to a target assignment.
//!
//! # Files
//! None: a target assignment is recomputed from the members' subscriptions when needed,
//! and members do not survive a restart.

use super::consumer::{Partitions, TopicMeta};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// The assignors this broker offers, the first being the default (Kafka's order).
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// Member id → the subscribed topics (name, id and size) it may be given.
pub type Subscriptions = BTreeMap<String, Vec<(String, TopicMeta)>>;

/// Each topic's partitions split into contiguous ranges over its subscribers, sorted by
/// member id, so co-partitioned topics line up.
pub fn range(subs: &Subscriptions) -> BTreeMap<String, Partitions> {
    let mut out: BTreeMap<String, Partitions> = subs
        .keys()
        .map(|m| (m.clone(), Partitions::new()))
        .collect();
    let mut topics: BTreeMap<&str, (&TopicMeta, Vec<&str>)> = BTreeMap::new();
    for (member, ts) in subs {
        for (name, t) in ts {
            topics
                .entry(name)
                .or_insert_with(|| (t, Vec::new()))
                .1
                .push(member);
        }
    }
    for (t, members) in topics.values() {
        let n = members.len() as i32;
        let (per, extra) = (t.partitions / n, t.partitions % n);
        let mut next = 0;
        for (i, member) in members.iter().enumerate() {
            let count = per + i32::from((i as i32) < extra);
            let set: BTreeSet<i32> = (next..next + count).collect();
            next += count;
            if let Some(a) = out.get_mut(*member) {
                if !set.is_empty() {
                    a.insert(t.id, set);
                }
            }
        }
    }
    out
}

/// A balanced assignment that keeps as much of the previous one as balance allows.
pub fn uniform(
    subs: &Subscriptions,
    previous: &BTreeMap<String, Partitions>,
) -> BTreeMap<String, Partitions> {
    let mut eligible: BTreeMap<(Uuid, i32), Vec<&str>> = BTreeMap::new();
    for (member, ts) in subs {
        for (_, t) in ts {
            for p in 0..t.partitions {
                eligible.entry((t.id, p)).or_default().push(member);
            }
        }
    }
    let members = subs.len().max(1);
    let ceiling = eligible.len().div_ceil(members);
    let mut owner: BTreeMap<(Uuid, i32), &str> = BTreeMap::new();
    let mut count: BTreeMap<&str, usize> = subs.keys().map(|m| (m.as_str(), 0)).collect();
    // Keep previous owners while they stay subscribed and under the ceiling.
    for (member, parts) in previous {
        let Some(member) = subs.get_key_value(member).map(|(k, _)| k.as_str()) else {
            continue;
        };
        for (t, ps) in parts {
            for p in ps {
                let key = (*t, *p);
                let ok = eligible.get(&key).is_some_and(|e| e.contains(&member));
                if ok && !owner.contains_key(&key) && count[member] < ceiling {
                    owner.insert(key, member);
                    *count.entry(member).or_default() += 1;
                }
            }
        }
    }
    // Give the rest to the least loaded eligible member, scarcest partitions first.
    let mut free: Vec<(&(Uuid, i32), &Vec<&str>)> = eligible
        .iter()
        .filter(|(k, _)| !owner.contains_key(*k))
        .collect();
    free.sort_by_key(|(k, e)| (e.len(), **k));
    for (key, candidates) in free {
        if let Some(m) = candidates.iter().min_by_key(|m| (count[**m], **m)) {
            owner.insert(*key, m);
            *count.entry(m).or_default() += 1;
        }
    }
    // Even out: move a partition from a member with two more than a subscriber of it.
    for _ in 0..eligible.len() {
        let mut moved = false;
        let keys: Vec<(Uuid, i32)> = owner.keys().copied().collect();
        for key in keys {
            let from = owner[&key];
            let Some(to) = eligible[&key]
                .iter()
                .copied()
                .filter(|m| count[*m] + 1 < count[from])
                .min_by_key(|m| (count[*m], *m))
            else {
                continue;
            };
            owner.insert(key, to);
            *count.entry(from).or_default() -= 1;
            *count.entry(to).or_default() += 1;
            moved = true;
        }
        if !moved {
            break;
        }
    }
    let mut out: BTreeMap<String, Partitions> = subs
        .keys()
        .map(|m| (m.clone(), Partitions::new()))
        .collect();
    for ((t, p), m) in owner {
        if let Some(a) = out.get_mut(m) {
            a.entry(t).or_default().insert(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, partitions: i32) -> (String, TopicMeta) {
        let id = Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes());
        (name.to_string(), TopicMeta { id, partitions })
    }

    /// Every member subscribed to every topic.
    fn subs(members: &[&str], topics: &[(String, TopicMeta)]) -> Subscriptions {
        members
            .iter()
            .map(|m| (m.to_string(), topics.to_vec()))
            .collect()
    }

    fn count(p: &Partitions) -> usize {
        p.values().map(BTreeSet::len).sum()
    }

    fn sizes(a: &BTreeMap<String, Partitions>) -> Vec<usize> {
        a.values().map(count).collect()
    }

    fn balanced(a: &BTreeMap<String, Partitions>, total: usize) {
        let s = sizes(a);
        assert_eq!(
            s.iter().sum::<usize>(),
            total,
            "every partition once: {s:?}"
        );
        let (max, min) = (s.iter().max().copied(), s.iter().min().copied());
        assert!(
            max.zip(min).is_some_and(|(x, n)| x - n <= 1),
            "balanced: {s:?}"
        );
    }

    /// How many of `before`'s partitions a member still has in `after`.
    fn kept(before: &BTreeMap<String, Partitions>, after: &BTreeMap<String, Partitions>) -> usize {
        before
            .iter()
            .filter_map(|(m, parts)| after.get(m).map(|now| (parts, now)))
            .map(|(parts, now)| {
                parts
                    .iter()
                    .map(|(t, ps)| {
                        ps.iter()
                            .filter(|p| now.get(t).is_some_and(|n| n.contains(p)))
                            .count()
                    })
                    .sum::<usize>()
            })
            .sum()
    }

    #[test]
    fn range_gives_each_member_a_contiguous_run_in_member_order() {
        let topics = [topic("a", 7), topic("b", 3)];
        let r = range(&subs(&["m1", "m2", "m3"], &topics));
        for (name, t) in &topics {
            let mut next = 0;
            for (member, parts) in &r {
                let ps: Vec<i32> = parts
                    .get(&t.id)
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default();
                let expected: Vec<i32> = (next..next + ps.len() as i32).collect();
                assert_eq!(
                    ps, expected,
                    "{member}'s share of {name} is contiguous and in order"
                );
                next += ps.len() as i32;
            }
            assert_eq!(next, t.partitions, "all of {name} is assigned");
        }
        assert_eq!(r["m1"][&topics[0].1.id], BTreeSet::from([0, 1, 2]));
        assert_eq!(r["m3"][&topics[0].1.id], BTreeSet::from([5, 6]));
        // Co-partitioned topics line up: the same member has partition 0 of both.
        assert_eq!(r["m1"][&topics[1].1.id], BTreeSet::from([0]));
    }

    #[test]
    fn range_gives_a_topic_only_to_its_subscribers() {
        let (a, b) = (topic("a", 4), topic("b", 2));
        let mut s = subs(&["m1", "m2"], std::slice::from_ref(&a));
        s.insert("m3".into(), vec![b.clone()]);
        let r = range(&s);
        assert_eq!(r["m3"].keys().collect::<Vec<_>>(), vec![&b.1.id]);
        assert_eq!(count(&r["m3"]), 2);
        assert_eq!(count(&r["m1"]) + count(&r["m2"]), 4);
    }

    #[test]
    fn uniform_is_balanced_and_sticky_when_a_member_leaves() {
        let topics = [topic("a", 4), topic("b", 3)];
        let three = subs(&["m1", "m2", "m3"], &topics);
        let first = uniform(&three, &BTreeMap::new());
        balanced(&first, 7);
        let two = subs(&["m1", "m2"], &topics);
        let second = uniform(&two, &first);
        balanced(&second, 7);
        for id in ["m1", "m2"] {
            for (t, ps) in &first[id] {
                assert!(
                    ps.iter().all(|p| second[id][t].contains(p)),
                    "{id} kept its partitions"
                );
            }
        }
    }

    #[test]
    fn uniform_is_balanced_and_sticky_when_a_member_joins() {
        let topics = [topic("a", 6), topic("b", 6)];
        let first = uniform(&subs(&["m1", "m2"], &topics), &BTreeMap::new());
        balanced(&first, 12);
        let second = uniform(&subs(&["m1", "m2", "m3"], &topics), &first);
        balanced(&second, 12);
        // Only what the newcomer needs moves: m3 takes 4, the other 8 stay put.
        assert_eq!(count(&second["m3"]), 4);
        assert_eq!(kept(&first, &second), 8);
        // And the same inputs give the same answer (no churn from one epoch to the next).
        assert_eq!(
            uniform(&subs(&["m1", "m2", "m3"], &topics), &second),
            second
        );
    }
}
