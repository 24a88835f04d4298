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
