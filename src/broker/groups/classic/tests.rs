//! The classic state machine driven as the JoinGroup/SyncGroup/Heartbeat/LeaveGroup
//! handlers drive it, on a coordinator opened on a temporary directory.

use super::super::{CommittedOffset, GroupCoordinator, GroupSettings, GroupState};
use super::JoinRequest;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use std::future::Future;
use std::time::{Duration, Instant};

const GROUP: &str = "g";

fn settings() -> GroupSettings {
    GroupSettings {
        min_session_timeout_ms: 10,
        max_session_timeout_ms: 300_000,
        consumer_session_timeout: Duration::from_secs(45),
        consumer_heartbeat_interval: Duration::from_secs(5),
        offsets_retention: Duration::from_secs(7 * 24 * 3600),
        offsets_retention_check: Duration::from_secs(600),
        fsync: false,
    }
}

fn open() -> (tempfile::TempDir, GroupCoordinator) {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = GroupCoordinator::open(dir.path().join("groups"), settings()).expect("open");
    (dir, c)
}

fn join_req(member_id: &str, instance: Option<&str>, session_ms: i32) -> JoinRequest {
    JoinRequest {
        group_id: GROUP.into(),
        member_id: member_id.into(),
        instance_id: instance.map(str::to_string),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: session_ms,
        rebalance_timeout_ms: 5_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        require_known_member_id: false,
    }
}

/// Fails the test instead of hanging it when a join or sync never completes.
async fn soon<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("the coordinator answered in time")
}

fn state(c: &GroupCoordinator) -> GroupState {
    c.describe(GROUP, |g| g.state).expect("group exists")
}

fn offset(n: i64) -> Vec<(String, i32, CommittedOffset)> {
    vec![(
        "t".into(),
        0,
        CommittedOffset {
            offset: n,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp: crate::clock::now_ms(),
        },
    )]
}

/// A single member joins and syncs; returns its id and generation.
async fn stable_single(
    c: &GroupCoordinator,
    instance: Option<&str>,
    session_ms: i32,
) -> (String, i32) {
    let joined = soon(c.join(join_req("", instance, session_ms))).await;
    assert_eq!(joined.error, None);
    let id = joined.member_id.clone();
    let assignment = vec![(id.clone(), Bytes::from_static(b"a"))];
    soon(c.sync(GROUP, joined.generation, &id, instance, assignment))
        .await
        .expect("sync");
    (id, joined.generation)
}

#[tokio::test]
async fn the_first_member_leads_and_its_sync_makes_the_group_stable() {
    let (_dir, c) = open();
    let joined = soon(c.join(join_req("", None, 10_000))).await;
    assert_eq!(joined.error, None);
    assert_eq!(joined.generation, 1);
    assert_eq!(joined.leader, joined.member_id);
    assert_eq!(joined.members.len(), 1, "the leader sees every member");
    assert_eq!(state(&c), GroupState::CompletingRebalance);
    let id = joined.member_id;
    let (_, protocol, assignment) = soon(c.sync(
        GROUP,
        1,
        &id,
        None,
        vec![(id.clone(), Bytes::from_static(b"a"))],
    ))
    .await
    .expect("sync");
    assert_eq!(protocol.as_deref(), Some("range"));
    assert_eq!(assignment, Bytes::from_static(b"a"));
    assert_eq!(state(&c), GroupState::Stable);
    assert_eq!(c.heartbeat(GROUP, 1, &id, None), Ok(()));
}

#[tokio::test]
async fn a_second_member_starts_a_rebalance_that_waits_for_both() {
    let (_dir, c) = open();
    let (a, gen1) = stable_single(&c, None, 10_000).await;
    let (b_joined, a_joined) = soon(async {
        tokio::join!(c.join(join_req("", None, 10_000)), async {
            // b's join is parked until a rejoins; meanwhile a's heartbeat says so.
            tokio::task::yield_now().await;
            assert_eq!(state(&c), GroupState::PreparingRebalance);
            assert_eq!(
                c.heartbeat(GROUP, gen1, &a, None),
                Err(ResponseError::RebalanceInProgress)
            );
            c.join(join_req(&a, None, 10_000)).await
        })
    })
    .await;
    assert_eq!((a_joined.error, b_joined.error), (None, None));
    assert_eq!(a_joined.generation, gen1 + 1);
    assert_eq!(b_joined.generation, gen1 + 1);
    assert_eq!(a_joined.leader, b_joined.leader);
    assert_eq!(state(&c), GroupState::CompletingRebalance);
    let b = b_joined.member_id.clone();
    let (leader, follower) = if a_joined.leader == a {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let plan = vec![
        (a.clone(), Bytes::from_static(b"for-a")),
        (b.clone(), Bytes::from_static(b"for-b")),
    ];
    let gen2 = gen1 + 1;
    let (follower_sync, leader_sync) = soon(async {
        tokio::join!(
            c.sync(GROUP, gen2, follower, None, vec![]),
            c.sync(GROUP, gen2, leader, None, plan)
        )
    })
    .await;
    let expect = |id: &String| Bytes::from(format!("for-{}", if *id == a { "a" } else { "b" }));
    assert_eq!(follower_sync.expect("follower").2, expect(follower));
    assert_eq!(leader_sync.expect("leader").2, expect(leader));
    assert_eq!(state(&c), GroupState::Stable);
}

#[tokio::test]
async fn the_last_member_leaving_empties_the_group() {
    let (_dir, c) = open();
    let (a, _) = stable_single(&c, None, 10_000).await;
    assert_eq!(c.leave(GROUP, &[(a.clone(), None)]), vec![Ok(())]);
    assert_eq!(state(&c), GroupState::Empty);
    assert!(c.describe(GROUP, |g| g.members.is_empty()).unwrap_or(false));
    assert_eq!(
        c.leave(GROUP, &[(a, None)]),
        vec![Err(ResponseError::UnknownMemberId)]
    );
}

#[tokio::test]
async fn a_member_whose_session_expires_is_removed() {
    let (_dir, c) = open();
    let (a, generation) = stable_single(&c, None, 10).await;
    c.expire(Instant::now() + Duration::from_millis(50)).await;
    assert_eq!(state(&c), GroupState::Empty);
    assert_eq!(
        c.heartbeat(GROUP, generation, &a, None),
        Err(ResponseError::UnknownMemberId)
    );
}

#[tokio::test]
async fn a_static_member_rejoining_under_a_new_id_fences_the_old_one() {
    let (_dir, c) = open();
    let (old, generation) = stable_single(&c, Some("i1"), 10_000).await;
    let again = soon(c.join(join_req("", Some("i1"), 10_000))).await;
    assert_eq!(again.error, None);
    assert_ne!(again.member_id, old);
    assert_eq!(again.generation, generation, "no rebalance (KIP-345)");
    assert_eq!(state(&c), GroupState::Stable);
    assert_eq!(
        c.heartbeat(GROUP, generation, &old, Some("i1")),
        Err(ResponseError::FencedInstanceId)
    );
    let synced = soon(c.sync(GROUP, generation, &old, Some("i1"), vec![])).await;
    assert_eq!(synced.err(), Some(ResponseError::FencedInstanceId));
    let rejoined = soon(c.join(join_req(&old, Some("i1"), 10_000))).await;
    assert_eq!(rejoined.error, Some(ResponseError::FencedInstanceId));
    assert_eq!(
        c.heartbeat(GROUP, generation, &again.member_id, Some("i1")),
        Ok(())
    );
}

#[tokio::test]
async fn an_unknown_member_id_is_refused() {
    let (_dir, c) = open();
    let (_, generation) = stable_single(&c, None, 10_000).await;
    assert_eq!(
        c.heartbeat(GROUP, generation, "nobody", None),
        Err(ResponseError::UnknownMemberId)
    );
    let joined = soon(c.join(join_req("nobody", None, 10_000))).await;
    assert_eq!(joined.error, Some(ResponseError::UnknownMemberId));
    let synced = soon(c.sync(GROUP, generation, "nobody", None, vec![])).await;
    assert_eq!(synced.err(), Some(ResponseError::UnknownMemberId));
    assert_eq!(
        c.heartbeat("no-such-group", 1, "nobody", None),
        Err(ResponseError::UnknownMemberId)
    );
}

#[tokio::test]
async fn a_commit_from_a_stale_generation_is_refused() {
    let (dir, c) = open();
    let (a, gen1) = stable_single(&c, None, 10_000).await;
    assert_eq!(c.commit(GROUP, gen1, &a, None, 8, offset(5)).await, Ok(()));
    // Another member joins: a rejoins into generation 2.
    let (b_joined, a_joined) = soon(async {
        tokio::join!(c.join(join_req("", None, 10_000)), async {
            tokio::task::yield_now().await;
            c.join(join_req(&a, None, 10_000)).await
        })
    })
    .await;
    let gen2 = a_joined.generation;
    assert_eq!(b_joined.generation, gen2);
    let plan = vec![
        (a.clone(), Bytes::new()),
        (b_joined.member_id.clone(), Bytes::new()),
    ];
    let leader = a_joined.leader.clone();
    let other = if leader == a {
        b_joined.member_id.clone()
    } else {
        a.clone()
    };
    let (r1, r2) = soon(async {
        tokio::join!(
            c.sync(GROUP, gen2, &leader, None, plan),
            c.sync(GROUP, gen2, &other, None, vec![])
        )
    })
    .await;
    assert!(r1.is_ok() && r2.is_ok());
    assert_eq!(
        c.commit(GROUP, gen1, &a, None, 8, offset(9)).await,
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(c.commit(GROUP, gen2, &a, None, 8, offset(7)).await, Ok(()));
    assert_eq!(c.fetch_offsets(GROUP)["t"][&0].offset, 7);
    // The commit acknowledged is on disk: a coordinator reopened on the files has it.
    drop(c);
    let reopened = GroupCoordinator::open(dir.path().join("groups"), settings()).expect("reopen");
    assert_eq!(reopened.fetch_offsets(GROUP)["t"][&0].offset, 7);
    assert_eq!(
        reopened.describe(GROUP, |g| g.state),
        Some(GroupState::Empty)
    );
}

// Offset commits and dead members, checked as Kafka's GroupCoordinator checks them.

#[tokio::test]
async fn a_commit_to_a_group_that_does_not_exist_needs_generation_minus_one() {
    let (_dir, c) = open();
    assert_eq!(
        c.commit(GROUP, 3, "m", None, 8, offset(1)).await,
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        c.commit(GROUP, 3, "m", None, 9, offset(1)).await,
        Err(ResponseError::GroupIdNotFound)
    );
    assert!(c.describe(GROUP, |_| ()).is_none(), "no group was created");
    assert_eq!(
        c.check_txn_member(GROUP, 3, "m", None),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(c.check_txn_member(GROUP, -1, "", None), Ok(()));
    // A simple consumer (assign()) or an admin client creates it.
    assert_eq!(c.commit(GROUP, -1, "", None, 8, offset(1)).await, Ok(()));
    assert_eq!(state(&c), GroupState::Empty);
    // An empty group takes generation -1 commits whatever the member id.
    assert_eq!(c.commit(GROUP, -1, "x", None, 8, offset(2)).await, Ok(()));
    assert_eq!(
        c.commit(GROUP, -1, "x", Some("i"), 8, offset(2)).await,
        Ok(())
    );
    assert_eq!(
        c.commit(GROUP, 0, "x", None, 8, offset(3)).await,
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(c.fetch_offsets(GROUP)["t"][&0].offset, 2);
}

#[tokio::test]
async fn commits_to_an_active_group_must_come_from_a_current_member() {
    let (_dir, c) = open();
    let (a, generation) = stable_single(&c, Some("i1"), 10_000).await;
    for (gen, member, instance, want) in [
        (-1, "", None, ResponseError::UnknownMemberId),
        (generation, "nobody", None, ResponseError::UnknownMemberId),
        (
            generation + 1,
            a.as_str(),
            None,
            ResponseError::IllegalGeneration,
        ),
        (
            generation - 1,
            a.as_str(),
            None,
            ResponseError::IllegalGeneration,
        ),
        (
            generation,
            "nobody",
            Some("i1"),
            ResponseError::FencedInstanceId,
        ),
        (
            generation,
            a.as_str(),
            Some("i2"),
            ResponseError::UnknownMemberId,
        ),
    ] {
        assert_eq!(
            c.commit(GROUP, gen, member, instance, 8, offset(1)).await,
            Err(want),
            "OffsetCommit generation {gen} member {member} instance {instance:?}"
        );
    }
    assert_eq!(
        c.commit(GROUP, generation, &a, Some("i1"), 8, offset(1))
            .await,
        Ok(())
    );
    // TxnOffsetCommit: a named member is checked the same way; no member at all (older
    // versions, a bare group id) leaves it to the transaction.
    assert_eq!(c.check_txn_member(GROUP, -1, "", None), Ok(()));
    assert_eq!(
        c.check_txn_member(GROUP, generation, "nobody", None),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        c.check_txn_member(GROUP, generation - 1, &a, None),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(c.check_txn_member(GROUP, generation, &a, None), Ok(()));
    // The member leaves: its commits are refused, the empty group takes anonymous ones.
    assert_eq!(c.leave(GROUP, &[(a.clone(), None)]), vec![Ok(())]);
    assert_eq!(
        c.commit(GROUP, generation, &a, None, 8, offset(2)).await,
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        c.check_txn_member(GROUP, generation, &a, None),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(c.commit(GROUP, -1, "", None, 8, offset(3)).await, Ok(()));
}

#[tokio::test]
async fn a_commit_between_join_and_sync_is_asked_to_finish_the_rebalance() {
    let (_dir, c) = open();
    let joined = soon(c.join(join_req("", None, 10_000))).await;
    assert_eq!(state(&c), GroupState::CompletingRebalance);
    let (id, generation) = (joined.member_id, joined.generation);
    assert_eq!(
        c.commit(GROUP, generation, &id, None, 8, offset(1)).await,
        Err(ResponseError::RebalanceInProgress)
    );
    // A transactional commit is not held up (Kafka checks only its member).
    assert_eq!(c.check_txn_member(GROUP, generation, &id, None), Ok(()));
}

#[tokio::test]
async fn a_commit_keeps_a_members_session_alive() {
    let (_dir, c) = open();
    let (a, generation) = stable_single(&c, None, 200).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        c.commit(GROUP, generation, &a, None, 8, offset(1)).await,
        Ok(())
    );
    c.expire(Instant::now() + Duration::from_millis(100)).await;
    assert_eq!(state(&c), GroupState::Stable);
}

#[tokio::test]
async fn a_member_that_joined_but_never_synced_expires_and_the_group_can_be_deleted() {
    let (_dir, c) = open();
    let joined = soon(c.join(join_req("", Some("static"), 100))).await;
    assert_eq!(joined.error, None);
    assert_eq!(state(&c), GroupState::CompletingRebalance);
    c.expire(Instant::now() + Duration::from_millis(50)).await;
    assert_eq!(
        state(&c),
        GroupState::CompletingRebalance,
        "still in session"
    );
    assert_eq!(c.delete(GROUP).await, Err(ResponseError::NonEmptyGroup));
    c.expire(Instant::now() + Duration::from_millis(150)).await;
    assert_eq!(state(&c), GroupState::Empty);
    assert_eq!(c.delete(GROUP).await, Ok(()));
}

#[tokio::test]
async fn members_that_die_during_a_rebalance_leave_an_empty_deletable_group() {
    let (_dir, c) = open();
    let c = std::sync::Arc::new(c);
    let (_a, _) = stable_single(&c, None, 100).await;
    // b's JoinGroup waits for a to rejoin; then both clients die (the parked join is
    // abandoned, a never rejoins and nobody heartbeats).
    let parked = tokio::spawn({
        let c = c.clone();
        async move { c.join(join_req("", None, 100)).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(state(&c), GroupState::PreparingRebalance);
    parked.abort();
    // a's session ends: the join phase completes with b, whose session starts then.
    c.expire(Instant::now() + Duration::from_millis(150)).await;
    assert_ne!(state(&c), GroupState::Stable);
    c.expire(Instant::now() + Duration::from_millis(300)).await;
    assert_eq!(state(&c), GroupState::Empty);
    assert_eq!(c.delete(GROUP).await, Ok(()));
}

#[tokio::test]
async fn a_member_id_handed_out_but_never_used_is_forgotten_after_a_session() {
    let (_dir, c) = open();
    let mut req = join_req("", None, 100);
    req.require_known_member_id = true;
    let first = soon(c.join(req)).await;
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    c.expire(Instant::now() + Duration::from_millis(150)).await;
    let late = soon(c.join(join_req(&first.member_id, None, 100))).await;
    assert_eq!(late.error, Some(ResponseError::UnknownMemberId));
}

mod consumer_protocol {
    use super::super::super::consumer::tests::join;
    use super::super::super::consumer::{Metadata, TopicMeta};
    use super::*;

    fn meta() -> Metadata {
        [(
            "t".to_string(),
            TopicMeta {
                id: uuid::Uuid::new_v4(),
                partitions: 2,
            },
        )]
        .into()
    }

    #[tokio::test]
    async fn commits_name_the_current_member_epoch_and_dead_members_expire() {
        let (_dir, c) = open();
        let m = meta();
        let reply = c
            .consumer_heartbeat(GROUP, join("a", &["t"]), &m)
            .expect("joined");
        let epoch = reply.epoch;
        for (e, member, version, want) in [
            (epoch - 1, "a", 9, ResponseError::StaleMemberEpoch),
            (epoch + 1, "a", 9, ResponseError::StaleMemberEpoch),
            (epoch, "nobody", 9, ResponseError::UnknownMemberId),
            (-1, "", 9, ResponseError::UnknownMemberId),
            (epoch, "a", 8, ResponseError::UnsupportedVersion),
        ] {
            assert_eq!(
                c.commit(GROUP, e, member, None, version, offset(1)).await,
                Err(want),
                "epoch {e} member {member} v{version}"
            );
        }
        assert_eq!(
            c.commit(GROUP, epoch, "a", None, 9, offset(1)).await,
            Ok(())
        );
        assert_eq!(c.check_txn_member(GROUP, -1, "", None), Ok(()));
        assert_eq!(
            c.check_txn_member(GROUP, epoch - 1, "a", None),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(c.check_txn_member(GROUP, epoch, "a", None), Ok(()));
        assert_eq!(c.delete(GROUP).await, Err(ResponseError::NonEmptyGroup));
        // The member stops heartbeating: gone after the session timeout, the group empty.
        c.expire(Instant::now() + settings().consumer_session_timeout + Duration::from_millis(10))
            .await;
        assert_eq!(c.describe(GROUP, |g| g.state_name()), Some("Empty"));
        assert_eq!(
            c.commit(GROUP, epoch, "a", None, 9, offset(2)).await,
            Err(ResponseError::UnknownMemberId)
        );
        assert_eq!(c.commit(GROUP, -1, "", None, 9, offset(3)).await, Ok(()));
        assert_eq!(c.delete(GROUP).await, Ok(()));
    }
}
