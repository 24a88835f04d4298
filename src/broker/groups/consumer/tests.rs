use super::*;

fn meta(topics: &[(&str, i32)]) -> Metadata {
    topics
        .iter()
        .map(|(n, p)| {
            (
                n.to_string(),
                TopicMeta {
                    id: Uuid::new_v5(&Uuid::NAMESPACE_OID, n.as_bytes()),
                    partitions: *p,
                },
            )
        })
        .collect()
}

/// A new member's first heartbeat, subscribed to `topics` (also used by the classic group tests).
pub(in crate::broker::groups) fn join(id: &str, topics: &[&str]) -> Heartbeat {
    Heartbeat {
        version: 1,
        member_id: id.into(),
        member_epoch: 0,
        instance_id: None,
        rack_id: None,
        rebalance_timeout_ms: 30_000,
        topics: Some(topics.iter().map(|s| s.to_string()).collect()),
        regex: None,
        assignor: None,
        owned: Some(Partitions::new()),
        client_id: "c".into(),
        client_host: "h".into(),
        undescribable: BTreeSet::new(),
    }
}

fn beat(id: &str, epoch: i32, owned: &Partitions) -> Heartbeat {
    Heartbeat {
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        topics: None,
        owned: Some(owned.clone()),
        ..join(id, &[])
    }
}

fn count(p: &Partitions) -> usize {
    p.values().map(BTreeSet::len).sum()
}

#[test]
fn a_second_member_gets_partitions_only_after_the_first_revokes_them() {
    let m = meta(&[("t", 6)]);
    let now = Instant::now();
    let mut g = ConsumerGroup::default();
    let a = g.heartbeat(join("a", &["t"]), &m, now).unwrap();
    let a_owned = a.assignment.unwrap();
    assert_eq!(count(&a_owned), 6);
    let b = g.heartbeat(join("b", &["t"]), &m, now).unwrap();
    assert_eq!(
        count(b.assignment.as_ref().unwrap()),
        0,
        "nothing is free yet"
    );
    assert_eq!(g.state_name(), "Reconciling");
    // a is told to keep three; its epoch stays until it confirms.
    let a2 = g.heartbeat(beat("a", a.epoch, &a_owned), &m, now).unwrap();
    let kept = a2.assignment.unwrap();
    assert_eq!(count(&kept), 3);
    assert_eq!(a2.epoch, a.epoch);
    let a3 = g.heartbeat(beat("a", a.epoch, &kept), &m, now).unwrap();
    assert!(a3.epoch > a.epoch);
    let b2 = g
        .heartbeat(beat("b", b.epoch, &Partitions::new()), &m, now)
        .unwrap();
    let b_owned = b2.assignment.unwrap();
    assert_eq!(count(&b_owned), 3);
    assert!(!intersects(&b_owned, &kept));
    assert_eq!(g.state_name(), "Stable");
}

#[test]
fn wrong_epochs_are_fenced_and_unknown_members_refused() {
    let m = meta(&[("t", 2)]);
    let now = Instant::now();
    let mut g = ConsumerGroup::default();
    let a = g.heartbeat(join("a", &["t"]), &m, now).unwrap();
    let owned = a.assignment.unwrap();
    let e = g.heartbeat(beat("a", a.epoch + 5, &owned), &m, now).err();
    assert_eq!(e.map(|e| e.0), Some(ResponseError::FencedMemberEpoch));
    let e = g.heartbeat(beat("zz", 3, &owned), &m, now).err();
    assert_eq!(e.map(|e| e.0), Some(ResponseError::UnknownMemberId));
}

#[test]
fn a_restarted_static_member_takes_over_its_assignment() {
    let m = meta(&[("t", 4)]);
    let now = Instant::now();
    let mut g = ConsumerGroup::default();
    let mut j = join("a", &["t"]);
    j.instance_id = Some("i1".into());
    let a = g.heartbeat(j, &m, now).unwrap();
    let mut j2 = join("a2", &["t"]);
    j2.instance_id = Some("i1".into());
    let e = g.heartbeat(j2, &m, now).err();
    assert_eq!(e.map(|e| e.0), Some(ResponseError::UnreleasedInstanceId));
    let mut leave = beat("a", LEAVE_STATIC_EPOCH, &Partitions::new());
    leave.instance_id = Some("i1".into());
    g.heartbeat(leave, &m, now).unwrap();
    let mut j3 = join("a3", &["t"]);
    j3.instance_id = Some("i1".into());
    let back = g.heartbeat(j3, &m, now).unwrap();
    assert_eq!(back.epoch, a.epoch);
    assert_eq!(back.assignment, a.assignment);
}

/// Members as a client sees them: each one's epoch and the partitions it owns.
type Clients = BTreeMap<String, (i32, Partitions)>;

#[test]
fn partitions_added_to_a_subscribed_topic_bump_the_epoch_and_are_assigned() {
    let now = Instant::now();
    let mut g = ConsumerGroup::default();
    let a = g
        .heartbeat(join("a", &["t"]), &meta(&[("t", 2)]), now)
        .unwrap();
    let owned = a.assignment.unwrap();
    assert_eq!(count(&owned), 2);
    let again = g
        .heartbeat(beat("a", a.epoch, &owned), &meta(&[("t", 2)]), now)
        .unwrap();
    assert_eq!(again.epoch, a.epoch, "nothing changed");
    let grown = g
        .heartbeat(beat("a", a.epoch, &owned), &meta(&[("t", 4)]), now)
        .unwrap();
    assert!(grown.epoch > a.epoch);
    assert_eq!(count(grown.assignment.as_ref().unwrap()), 4);
}

/// One heartbeat from each member, as a client sends it, until the group is stable.
/// Checks on the way that epochs never go back and no partition has two owners.
fn converge(g: &mut ConsumerGroup, m: &Metadata, clients: &mut Clients) {
    for _ in 0..10 {
        let ids: Vec<String> = clients.keys().cloned().collect();
        for id in ids {
            let group_epoch = g.group_epoch;
            let (epoch, owned) = clients[&id].clone();
            let reply = g
                .heartbeat(beat(&id, epoch, &owned), m, Instant::now())
                .expect("heartbeat");
            assert!(reply.epoch >= epoch, "{id}'s epoch went back");
            assert!(g.group_epoch >= group_epoch, "the group epoch went back");
            let entry = clients.get_mut(&id).expect("client");
            entry.0 = reply.epoch;
            if let Some(a) = reply.assignment {
                entry.1 = a;
            }
            let mut seen = Partitions::new();
            for (_, owned) in clients.values() {
                assert!(!intersects(&seen, owned), "a partition has two owners");
                for (t, ps) in owned {
                    seen.entry(*t).or_default().extend(ps);
                }
            }
        }
        if g.state_name() == "Stable" {
            return;
        }
    }
    panic!("the group did not settle: {}", g.state_name());
}

fn joined(g: &mut ConsumerGroup, m: &Metadata, clients: &mut Clients, id: &str, topics: &[&str]) {
    let r = g
        .heartbeat(join(id, topics), m, Instant::now())
        .expect("join");
    clients.insert(id.into(), (r.epoch, r.assignment.unwrap_or_default()));
}

#[test]
fn a_member_that_leaves_releases_its_partitions_to_the_others() {
    let m = meta(&[("t", 4)]);
    let mut g = ConsumerGroup::default();
    let mut clients = Clients::new();
    joined(&mut g, &m, &mut clients, "a", &["t"]);
    joined(&mut g, &m, &mut clients, "b", &["t"]);
    converge(&mut g, &m, &mut clients);
    assert_eq!(count(&clients["a"].1), 2);
    assert_eq!(count(&clients["b"].1), 2);
    let before = g.group_epoch;
    let (epoch, owned) = clients.remove("b").expect("b");
    let left = g
        .heartbeat(beat("b", LEAVE_EPOCH, &owned), &m, Instant::now())
        .expect("leave");
    assert_eq!(left.epoch, LEAVE_EPOCH);
    assert!(epoch >= 0 && !g.members.contains_key("b"));
    assert!(g.group_epoch > before, "a leave moves the group epoch on");
    converge(&mut g, &m, &mut clients);
    assert_eq!(count(&clients["a"].1), 4, "a has all of t");
    assert_eq!(clients["a"].0, g.group_epoch);
}

#[test]
fn a_subscription_change_reassigns_after_the_old_partitions_are_revoked() {
    let m = meta(&[("t1", 2), ("t2", 2)]);
    let (t1, t2) = (m["t1"].id, m["t2"].id);
    let mut g = ConsumerGroup::default();
    let mut clients = Clients::new();
    joined(&mut g, &m, &mut clients, "a", &["t1"]);
    joined(&mut g, &m, &mut clients, "b", &["t1"]);
    converge(&mut g, &m, &mut clients);
    assert_eq!(count(&clients["b"].1), 1);
    // b moves to t2: it first gives t1 back, keeping its epoch until it confirms.
    let (epoch, owned) = clients["b"].clone();
    let change = Heartbeat {
        topics: Some(vec!["t2".into()]),
        ..beat("b", epoch, &owned)
    };
    let r = g.heartbeat(change, &m, Instant::now()).expect("change");
    assert_eq!(r.epoch, epoch);
    assert_eq!(r.assignment.as_ref().map(count), Some(0), "revoke t1 first");
    clients.insert("b".into(), (r.epoch, r.assignment.unwrap_or_default()));
    converge(&mut g, &m, &mut clients);
    assert_eq!(clients["a"].1.get(&t1).map(BTreeSet::len), Some(2));
    assert_eq!(clients["b"].1.get(&t2).map(BTreeSet::len), Some(2));
    assert!(!clients["a"].1.contains_key(&t2) && !clients["b"].1.contains_key(&t1));
}

#[test]
fn epochs_only_move_forward_as_members_come_and_go() {
    let m = meta(&[("t", 6)]);
    let mut g = ConsumerGroup::default();
    let mut clients = Clients::new();
    let mut last = (g.group_epoch, g.assignment_epoch);
    for id in ["a", "b", "c"] {
        joined(&mut g, &m, &mut clients, id, &["t"]);
        converge(&mut g, &m, &mut clients);
        assert!(g.group_epoch > last.0 && g.assignment_epoch > last.1);
        last = (g.group_epoch, g.assignment_epoch);
    }
    for id in ["a", "c"] {
        let (_, owned) = clients.remove(id).expect("member");
        g.heartbeat(beat(id, LEAVE_EPOCH, &owned), &m, Instant::now())
            .expect("leave");
        converge(&mut g, &m, &mut clients);
        assert!(g.group_epoch > last.0 && g.assignment_epoch > last.1);
        last = (g.group_epoch, g.assignment_epoch);
    }
    assert_eq!(count(&clients["b"].1), 6);
    // A member that rejoins at epoch 0 starts again, but the group's epochs do not.
    joined(&mut g, &m, &mut clients, "a", &["t"]);
    converge(&mut g, &m, &mut clients);
    assert!(g.group_epoch > last.0);
    assert!(clients.values().all(|(e, _)| *e == g.assignment_epoch));
}

#[test]
fn a_regex_resolves_without_the_topics_the_heartbeating_member_may_not_describe() {
    let m = meta(&[("app-a", 2), ("app-secret", 2), ("other", 1)]);
    let mut g = ConsumerGroup::default();
    let hidden = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let first = Heartbeat {
        topics: None,
        regex: Some("app-.*".into()),
        undescribable: hidden(&["app-secret", "other"]),
        ..join("a", &[])
    };
    let r = g.heartbeat(first, &m, Instant::now()).expect("join");
    let a = Uuid::new_v5(&Uuid::NAMESPACE_OID, b"app-a");
    assert_eq!(
        r.assignment
            .as_ref()
            .map(|p| p.keys().copied().collect::<Vec<_>>()),
        Some(vec![a])
    );
    assert_eq!(g.subscribed_topics(), hidden(&["app-a"]));
    // Once the topic may be described, the next heartbeat brings it in with a new epoch.
    let epoch = g.group_epoch;
    let owned = r.assignment.unwrap_or_default();
    let next = Heartbeat {
        undescribable: BTreeSet::new(),
        ..beat("a", r.epoch, &owned)
    };
    g.heartbeat(next, &m, Instant::now()).expect("heartbeat");
    assert!(g.group_epoch > epoch);
    assert_eq!(g.subscribed_topics(), hidden(&["app-a", "app-secret"]));
}
