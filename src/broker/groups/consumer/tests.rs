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

fn join(id: &str, topics: &[&str]) -> Heartbeat {
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
