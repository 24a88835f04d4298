//! The coordinator's state transitions on a temporary directory, as the InitProducerId,
//! AddPartitionsToTxn, EndTxn handlers and the broker's abort loop drive them.

use super::*;
use std::sync::atomic::{AtomicI64, Ordering};

fn settings() -> TxnSettings {
    TxnSettings {
        max_timeout_ms: 900_000,
        id_expiration: Duration::from_secs(7 * 24 * 3600),
        abort_check_interval: Duration::from_secs(10),
        transaction_version: 2,
        fsync: false,
    }
}

/// Producer ids as the broker hands them out: never reused.
struct Ids(AtomicI64);

impl Ids {
    fn new() -> Self {
        Self(AtomicI64::new(1000))
    }
    fn next(&self) -> Result<i64, ResponseError> {
        Ok(self.0.fetch_add(1, Ordering::Relaxed))
    }
}

fn open(dir: &tempfile::TempDir) -> TxnCoordinator {
    TxnCoordinator::open(dir.path().join("transactions"), settings()).expect("open")
}

async fn init(c: &TxnCoordinator, ids: &Ids, id: &str, timeout_ms: i32) -> (i64, i16) {
    match c.init(id, timeout_ms, None, &|| ids.next()).await {
        Ok(InitOutcome::Ready { producer_id, epoch }) => (producer_id, epoch),
        Ok(InitOutcome::AbortFirst(_)) => panic!("nothing was open"),
        Err(e) => panic!("init: {e:?}"),
    }
}

fn state(c: &TxnCoordinator, id: &str) -> TxnState {
    c.get(id).expect("known id").state
}

fn tp(topic: &str, partition: i32) -> (String, i32) {
    (topic.to_string(), partition)
}

#[tokio::test]
async fn a_transaction_goes_from_empty_through_ongoing_to_complete() {
    let dir = tempfile::tempdir().expect("tmp");
    let (c, ids) = (open(&dir), Ids::new());
    let (pid, epoch) = init(&c, &ids, "t", 60_000).await;
    assert_eq!(epoch, 0);
    assert_eq!(state(&c, "t"), TxnState::Empty);
    c.add_partitions("t", pid, epoch, &[tp("a", 0)])
        .await
        .expect("add");
    assert_eq!(state(&c, "t"), TxnState::Ongoing);
    for (commit, prepared, done) in [
        (true, TxnState::PrepareCommit, TxnState::CompleteCommit),
        (false, TxnState::PrepareAbort, TxnState::CompleteAbort),
    ] {
        c.add_partitions("t", pid, epoch, &[tp("a", 1)])
            .await
            .expect("add");
        let (plan, p, e) = c
            .prepare_end("t", pid, epoch, commit, false, &|| ids.next())
            .await
            .expect("end");
        assert_eq!((p, e), (pid, epoch), "protocol 1 keeps the epoch");
        let plan = plan.expect("markers to write");
        assert_eq!(plan.commit, commit);
        assert!(plan.partitions.contains(&tp("a", 1)));
        assert_eq!(state(&c, "t"), prepared);
        assert_eq!(c.unfinished().len(), 1, "a restart would finish it");
        c.complete(&plan).await.expect("complete");
        assert_eq!(state(&c, "t"), done);
        assert!(c.unfinished().is_empty());
        assert!(c.get("t").expect("t").partitions.is_empty());
    }
}

#[tokio::test]
async fn a_second_init_bumps_the_epoch_and_fences_the_old_producer() {
    let dir = tempfile::tempdir().expect("tmp");
    let (c, ids) = (open(&dir), Ids::new());
    let (pid, old) = init(&c, &ids, "t", 60_000).await;
    let (pid2, new) = init(&c, &ids, "t", 60_000).await;
    assert_eq!((pid2, new), (pid, old + 1));
    assert_eq!(
        c.add_partitions("t", pid, old, &[tp("a", 0)]).await,
        Err(ResponseError::ProducerFenced)
    );
    c.add_partitions("t", pid, new, &[tp("a", 0)])
        .await
        .expect("the new producer goes on");
    assert_eq!(
        c.verify_produce(pid, old, "a", 0),
        Err(ResponseError::InvalidProducerEpoch)
    );
    // An init while a transaction is open fences it and has it aborted first.
    match c.init("t", 60_000, None, &|| ids.next()).await {
        Ok(InitOutcome::AbortFirst(plan)) => {
            assert!(!plan.commit);
            assert_eq!(plan.epoch, new + 1);
            assert_eq!(state(&c, "t"), TxnState::PrepareAbort);
        }
        _ => panic!("the open transaction must be aborted first"),
    }
}

#[tokio::test]
async fn a_transaction_past_its_timeout_is_aborted_by_expire() {
    let dir = tempfile::tempdir().expect("tmp");
    let (c, ids) = (open(&dir), Ids::new());
    let (pid, epoch) = init(&c, &ids, "slow", 1).await;
    let (pid_ok, epoch_ok) = init(&c, &ids, "fast", 60_000).await;
    c.add_partitions("slow", pid, epoch, &[tp("a", 0)])
        .await
        .expect("add");
    c.add_partitions("fast", pid_ok, epoch_ok, &[tp("a", 1)])
        .await
        .expect("add");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let aborts = c.expire(&|| ids.next()).await;
    assert_eq!(aborts.len(), 1, "only the timed-out one");
    let plan = &aborts[0];
    assert_eq!((plan.id.as_str(), plan.commit), ("slow", false));
    assert_eq!(plan.epoch, epoch + 1, "its producer is fenced");
    assert_eq!(state(&c, "slow"), TxnState::PrepareAbort);
    assert_eq!(state(&c, "fast"), TxnState::Ongoing);
    assert_eq!(
        c.verify_produce(pid, epoch, "a", 0),
        Err(ResponseError::InvalidProducerEpoch)
    );
    // The abort survives a restart until the broker has written its markers.
    drop(c);
    let c = open(&dir);
    assert_eq!(c.unfinished().len(), 1);
}

#[tokio::test]
async fn a_produce_is_accepted_only_for_partitions_in_the_transaction() {
    let dir = tempfile::tempdir().expect("tmp");
    let (c, ids) = (open(&dir), Ids::new());
    let (pid, epoch) = init(&c, &ids, "t", 60_000).await;
    assert_eq!(
        c.verify_produce(pid, epoch, "a", 0),
        Err(ResponseError::InvalidTxnState),
        "no transaction is open yet"
    );
    c.add_partitions("t", pid, epoch, &[tp("a", 0)])
        .await
        .expect("add");
    assert_eq!(c.verify_produce(pid, epoch, "a", 0), Ok(()));
    assert_eq!(
        c.verify_produce(pid, epoch, "a", 1),
        Err(ResponseError::InvalidTxnState)
    );
    assert_eq!(
        c.verify_produce(pid + 50, 0, "a", 0),
        Err(ResponseError::InvalidTxnState),
        "an unknown producer"
    );
    // Protocol 2: the produce itself enrols the partition.
    c.add_partition_implicitly(pid, epoch, "a", 1)
        .expect("implicit add");
    assert_eq!(c.verify_produce(pid, epoch, "a", 1), Ok(()));
}

#[tokio::test]
async fn state_and_the_producer_index_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let ids = Ids::new();
    let (pid, epoch) = {
        let c = open(&dir);
        let (pid, epoch) = init(&c, &ids, "t", 60_000).await;
        c.add_partitions("t", pid, epoch, &[tp("a", 0)])
            .await
            .expect("add");
        c.add_offsets("t", pid, epoch, "g").await.expect("offsets");
        (pid, epoch)
    };
    let c = open(&dir);
    let meta = c.get("t").expect("t");
    assert_eq!(meta.state, TxnState::Ongoing);
    assert_eq!((meta.producer_id, meta.epoch), (pid, epoch));
    assert!(meta.groups.contains("g"));
    assert_eq!(c.verify_produce(pid, epoch, "a", 0), Ok(()));
    assert_eq!(
        c.lock().by_producer.get(&pid).map(String::as_str),
        Some("t")
    );
}

#[tokio::test]
async fn an_exhausted_epoch_moves_the_index_to_the_new_producer_id() {
    let dir = tempfile::tempdir().expect("tmp");
    let (c, ids) = (open(&dir), Ids::new());
    let (pid, _) = init(&c, &ids, "t", 60_000).await;
    if let Some(meta) = c.lock().by_id.get_mut("t") {
        meta.epoch = i16::MAX - 1;
    }
    let (pid2, epoch2) = init(&c, &ids, "t", 60_000).await;
    assert_ne!(pid2, pid);
    assert_eq!(epoch2, 0);
    c.add_partitions("t", pid2, epoch2, &[tp("a", 0)])
        .await
        .expect("add");
    assert_eq!(c.verify_produce(pid2, epoch2, "a", 0), Ok(()));
    assert_eq!(
        c.verify_produce(pid, i16::MAX - 1, "a", 0),
        Err(ResponseError::InvalidTxnState),
        "the old producer id is no longer anyone's"
    );
    assert_eq!(c.lock().by_producer.len(), 1);
    // The reopened coordinator indexes the new id.
    drop(c);
    let c = open(&dir);
    assert_eq!(c.verify_produce(pid2, epoch2, "a", 0), Ok(()));
}

#[tokio::test]
async fn a_forgotten_transactional_id_leaves_the_index() {
    let dir = tempfile::tempdir().expect("tmp");
    let ids = Ids::new();
    let c = TxnCoordinator::open(
        dir.path().join("transactions"),
        TxnSettings {
            id_expiration: Duration::ZERO,
            ..settings()
        },
    )
    .expect("open");
    let (pid, _) = init(&c, &ids, "t", 60_000).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(c.expire(&|| ids.next()).await.is_empty());
    assert!(c.get("t").is_none());
    assert!(c.lock().by_producer.is_empty());
    assert_eq!(
        c.verify_produce(pid, 0, "a", 0),
        Err(ResponseError::InvalidTxnState)
    );
    drop(c);
    assert!(open(&dir).get("t").is_none(), "its file is gone too");
}

#[tokio::test]
async fn a_change_whose_file_cannot_be_written_is_taken_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let (c, ids) = (open(&dir), Ids::new());
    let alloc = || ids.next();
    let (pid, epoch) = init(&c, &ids, "t", 60_000).await;
    c.add_partitions("t", pid, epoch, &[tp("a", 0)])
        .await
        .expect("add");
    // The directory is gone: every write fails, as on a full disk.
    std::fs::remove_dir_all(dir.path().join("transactions")).expect("rm");
    assert_eq!(
        c.add_partitions("t", pid, epoch, &[tp("a", 1)]).await,
        Err(ResponseError::NotCoordinator)
    );
    assert_eq!(c.get("t").expect("known").partitions.len(), 1);
    let end = c.prepare_end("t", pid, epoch, true, false, &alloc);
    assert!(matches!(end.await, Err(ResponseError::NotCoordinator)));
    assert_eq!(state(&c, "t"), TxnState::Ongoing);
    // Room again: the retried requests go through.
    std::fs::create_dir(dir.path().join("transactions")).expect("mkdir");
    c.add_partitions("t", pid, epoch, &[tp("a", 1)])
        .await
        .expect("add");
    let end = c.prepare_end("t", pid, epoch, true, false, &alloc);
    let (plan, _, _) = end.await.expect("prepare");
    assert_eq!(plan.expect("markers to write").partitions.len(), 2);
    drop(c);
    assert_eq!(state(&open(&dir), "t"), TxnState::PrepareCommit);
}

#[tokio::test]
async fn a_retried_end_takes_over_a_transaction_whose_markers_failed() {
    let dir = tempfile::tempdir().expect("tmp");
    let (c, ids) = (open(&dir), Ids::new());
    let alloc = || ids.next();
    let (pid, epoch) = init(&c, &ids, "t", 60_000).await;
    c.add_partitions("t", pid, epoch, &[tp("a", 0)])
        .await
        .expect("add");
    let end = c.prepare_end("t", pid, epoch, true, true, &alloc);
    let (plan, _, bumped) = end.await.expect("prepare");
    let plan = plan.expect("markers to write");
    // The markers could not be written; the producer retries from its epoch.
    c.stall(plan.clone());
    let end = c.prepare_end("t", pid, epoch, true, true, &alloc);
    let (again, _, e) = end.await.expect("retry");
    assert_eq!(again.map(|p| p.epoch), Some(plan.epoch));
    assert_eq!(e, bumped);
    // Someone else finishes it now: the next retry waits.
    let end = c.prepare_end("t", pid, epoch, true, true, &alloc);
    assert!(matches!(
        end.await,
        Err(ResponseError::ConcurrentTransactions)
    ));
    c.complete(&plan).await.expect("complete");
    let end = c.prepare_end("t", pid, epoch, true, true, &alloc);
    assert!(matches!(end.await, Ok((None, _, _))));
}
