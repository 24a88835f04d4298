//! The transaction coordinator: transactional ids, their producer id and epoch, the
//! partitions and groups of the open transaction, and its pending offset commits, with an
//! index from producer id to transactional id so a transactional produce is checked with
//! one lookup. Markers are written by the broker (see `Broker::finish_transaction`), not
//! here.
//!
//! # Files
//! One YAML file per transactional id (a `TxnMeta`) under `<data_dir>/.strata/transactions/`,
//! written off the async threads before a state change is answered, and removed when an
//! idle id expires. A change whose file cannot be written (a full disk) is taken back and
//! answered NOT_COORDINATOR. The producer-id index is rebuilt from them at open.
//!
//! # Crash consistency
//! Each file is replaced whole by a rename (see `state_files`), so a restart finds each
//! transaction where the client left it, or one step later. A transaction found in
//! PrepareCommit/PrepareAbort was decided but maybe not marked: `unfinished` hands it back
//! to the broker, which writes its markers again (harmless if they were written).

use super::groups::CommittedOffset;
use super::state_files::StateFiles;
use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use crate::clock::now_ms;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    /// Kafka's names, as ListTransactions and DescribeTransactions report them.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }
}

/// group → topic → partition → offset.
pub type PendingOffsets = BTreeMap<String, BTreeMap<String, BTreeMap<i32, CommittedOffset>>>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMeta {
    pub id: String,
    pub producer_id: i64,
    pub epoch: i16,
    /// The id and epoch before the last bump, so a producer that missed the answer to its
    /// own InitProducerId can retry it (KIP-360).
    pub last_producer_id: i64,
    pub last_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    pub groups: BTreeSet<String>,
    #[serde(default)]
    pub offsets: PendingOffsets,
    pub start_ms: i64,
    pub updated_ms: i64,
}

/// What the broker must do to finish a transaction: write markers with this producer id
/// and epoch to these partitions, then (on commit) apply the offsets.
#[derive(Clone, Debug)]
pub struct Completion {
    pub id: String,
    pub producer_id: i64,
    pub epoch: i16,
    pub commit: bool,
    pub partitions: Vec<(String, i32)>,
    pub offsets: PendingOffsets,
}

pub enum InitOutcome {
    Ready {
        producer_id: i64,
        epoch: i16,
    },
    /// An open transaction of the previous producer must be aborted first.
    AbortFirst(Completion),
}

#[derive(Clone, Debug)]
pub struct TxnSettings {
    pub max_timeout_ms: i32,
    pub id_expiration: Duration,
    pub abort_check_interval: Duration,
    /// The `transaction.version` feature level advertised: 2 lets clients use KIP-890's
    /// protocol (implicit partition adds, an epoch bump at every EndTxn).
    pub transaction_version: i16,
    /// fsync each state change before answering (`flush: always`), as the markers are.
    pub fsync: bool,
}

impl TxnSettings {
    pub fn from_config(c: &crate::config::Config) -> Self {
        let p = &c.props;
        Self {
            max_timeout_ms: p.int("transaction.max.timeout.ms") as i32,
            id_expiration: Duration::from_millis(
                p.int("transactional.id.expiration.ms").max(0) as u64
            ),
            abort_check_interval: Duration::from_millis(
                p.int("transaction.abort.timed.out.transaction.cleanup.interval.ms")
                    .max(10) as u64,
            ),
            transaction_version: p.int("transaction.version").clamp(0, 2) as i16,
            fsync: c.flush == crate::config::FlushPolicy::Always,
        }
    }
}

/// The id-to-producer allocator the coordinator is handed: `Sync`, so a reference to it
/// may live across the await of a file write.
pub type Allocate<'a> = dyn Fn() -> Result<i64, ResponseError> + Sync + 'a;

/// The transactions, and the index that finds one by its current producer id.
#[derive(Default)]
struct Txns {
    by_id: HashMap<String, TxnMeta>,
    /// Current producer id → transactional id; kept in step with every `TxnMeta` whose
    /// producer id is set (new id, epoch exhausted), loaded or forgotten.
    by_producer: HashMap<i64, String>,
}

impl Txns {
    fn insert(&mut self, meta: TxnMeta) {
        self.by_producer.insert(meta.producer_id, meta.id.clone());
        self.by_id.insert(meta.id.clone(), meta);
    }

    fn remove(&mut self, id: &str) {
        if let Some(meta) = self.by_id.remove(id) {
            unindex(&mut self.by_producer, &meta);
        }
    }

    /// The transaction of the producer id that a produce names.
    fn by_producer(&self, producer_id: i64) -> Option<&TxnMeta> {
        let id = self.by_producer.get(&producer_id)?;
        self.by_id.get(id).filter(|m| m.producer_id == producer_id)
    }
}

/// Drops the index entry of `meta`'s producer id, if it is still `meta`'s.
fn unindex(index: &mut HashMap<i64, String>, meta: &TxnMeta) {
    if index.get(&meta.producer_id) == Some(&meta.id) {
        index.remove(&meta.producer_id);
    }
}

/// What a change returned, with its transaction before and after it.
type Applied<R> = (R, Option<TxnMeta>, Option<TxnMeta>);

/// The transactions of this broker. One std `Mutex` suffices: every critical section is
/// short and never held across an await or a file write.
pub struct TxnCoordinator {
    files: StateFiles,
    txns: Mutex<Txns>,
    /// Decided transactions whose markers could not be written (a full disk): finished by
    /// whoever takes them out, the client's retried EndTxn or InitProducerId, or the
    /// transaction loop.
    stalled: Mutex<HashMap<String, Completion>>,
    pub settings: TxnSettings,
}

impl TxnCoordinator {
    pub fn open(dir: PathBuf, settings: TxnSettings) -> std::io::Result<Self> {
        let files = StateFiles::open(dir, settings.fsync)?;
        let mut txns = Txns::default();
        for meta in files.load::<TxnMeta>()? {
            txns.insert(meta);
        }
        Ok(Self {
            files,
            txns: Mutex::new(txns),
            stalled: Mutex::new(HashMap::new()),
            settings,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Txns> {
        self.txns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the transaction's file as it is now (or removes it once forgotten); returns
    /// once the file is in place.
    async fn persist(&self, id: &str) -> Result<(), ResponseError> {
        self.files
            .write(id, || self.lock().by_id.get(id).cloned())
            .await
    }

    /// Runs `f` on the transactions under the lock, then writes `id`'s file if `f` changed
    /// it. When `f` fails, or the write does (a full disk: the answer is then
    /// NOT_COORDINATOR, as Kafka's coordinator answers a failed append to its log), the
    /// change is taken back, so memory never runs ahead of the file.
    async fn change<R>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Txns) -> Result<R, ResponseError>,
    ) -> Result<R, ResponseError> {
        let (r, before, after) = self.apply(id, f)?;
        if before != after {
            if let Err(e) = self.persist(id).await {
                self.undo(id, before, after);
                return Err(e);
            }
        }
        Ok(r)
    }

    /// `change` for callers that cannot await.
    fn change_blocking<R>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Txns) -> Result<R, ResponseError>,
    ) -> Result<R, ResponseError> {
        let (r, before, after) = self.apply(id, f)?;
        if before != after {
            let written = self
                .files
                .write_blocking(id, || self.lock().by_id.get(id).cloned());
            if let Err(e) = written {
                self.undo(id, before, after);
                return Err(e);
            }
        }
        Ok(r)
    }

    /// `f` under the lock, with `id`'s transaction before and after it.
    fn apply<R>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Txns) -> Result<R, ResponseError>,
    ) -> Result<Applied<R>, ResponseError> {
        let mut txns = self.lock();
        let before = txns.by_id.get(id).cloned();
        match f(&mut txns) {
            Ok(r) => {
                let after = txns.by_id.get(id).cloned();
                Ok((r, before, after))
            }
            Err(e) => {
                if txns.by_id.get(id) != before.as_ref() {
                    Self::restore(&mut txns, id, before);
                }
                Err(e)
            }
        }
    }

    /// Puts `before` back unless the transaction changed again since `after` (that later
    /// change's write then holds this one too).
    fn undo(&self, id: &str, before: Option<TxnMeta>, after: Option<TxnMeta>) {
        let mut txns = self.lock();
        if txns.by_id.get(id) == after.as_ref() {
            Self::restore(&mut txns, id, before);
        }
    }

    fn restore(txns: &mut Txns, id: &str, before: Option<TxnMeta>) {
        txns.remove(id);
        if let Some(meta) = before {
            txns.insert(meta);
        }
    }

    /// Keeps a decided transaction whose markers could not be written, to be finished later.
    pub fn stall(&self, c: Completion) {
        self.stalled_lock().insert(c.id.clone(), c);
    }

    /// The stalled transaction of `id`, for the caller to finish (or stall again).
    pub fn take_stalled(&self, id: &str) -> Option<Completion> {
        self.stalled_lock().remove(id)
    }

    /// Every stalled transaction, for the caller to finish (or stall again).
    pub fn take_all_stalled(&self) -> Vec<Completion> {
        self.stalled_lock().drain().map(|(_, c)| c).collect()
    }

    fn stalled_lock(&self) -> MutexGuard<'_, HashMap<String, Completion>> {
        self.stalled.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks the producer id and epoch a request names against the transaction's.
    fn check<'a>(
        txns: &'a mut HashMap<String, TxnMeta>,
        id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<&'a mut TxnMeta, ResponseError> {
        let meta = txns
            .get_mut(id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        if meta.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if meta.epoch != epoch {
            return Err(ResponseError::ProducerFenced);
        }
        Ok(meta)
    }

    /// InitProducerId with a transactional id: a new id starts at epoch 0; a known one is
    /// bumped, which fences the previous producer, after aborting its open transaction.
    pub async fn init(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        allocate: &Allocate<'_>,
    ) -> Result<InitOutcome, ResponseError> {
        if timeout_ms <= 0 || timeout_ms > self.settings.max_timeout_ms {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        self.change(id, |txns| {
            let now = now_ms();
            let outcome = match txns.by_id.get_mut(id) {
                None => {
                    let pid = allocate()?;
                    txns.insert(TxnMeta {
                        id: id.to_string(),
                        producer_id: pid,
                        epoch: 0,
                        last_producer_id: -1,
                        last_epoch: -1,
                        timeout_ms,
                        state: TxnState::Empty,
                        partitions: BTreeSet::new(),
                        groups: BTreeSet::new(),
                        offsets: PendingOffsets::new(),
                        start_ms: -1,
                        updated_ms: now,
                    });
                    InitOutcome::Ready {
                        producer_id: pid,
                        epoch: 0,
                    }
                }
                Some(meta) => {
                    if let Some((pid, epoch)) = expected {
                        let current = meta.producer_id == pid && meta.epoch == epoch;
                        let retried = meta.last_producer_id == pid && meta.last_epoch == epoch;
                        if retried && meta.state != TxnState::Ongoing {
                            return Ok(InitOutcome::Ready {
                                producer_id: meta.producer_id,
                                epoch: meta.epoch,
                            });
                        }
                        if !current && !retried {
                            return Err(ResponseError::ProducerFenced);
                        }
                    }
                    let index = &mut txns.by_producer;
                    match meta.state {
                        TxnState::PrepareCommit | TxnState::PrepareAbort => {
                            return Err(ResponseError::ConcurrentTransactions)
                        }
                        TxnState::Ongoing => {
                            // Fence first, then abort with the new epoch, as Kafka does.
                            meta.last_producer_id = meta.producer_id;
                            meta.last_epoch = meta.epoch;
                            bump(meta, index, allocate)?;
                            meta.state = TxnState::PrepareAbort;
                            meta.updated_ms = now;
                            InitOutcome::AbortFirst(completion(meta, false))
                        }
                        _ => {
                            meta.last_producer_id = meta.producer_id;
                            meta.last_epoch = meta.epoch;
                            bump(meta, index, allocate)?;
                            meta.state = TxnState::Empty;
                            meta.timeout_ms = timeout_ms;
                            meta.partitions.clear();
                            meta.groups.clear();
                            meta.offsets.clear();
                            meta.updated_ms = now;
                            InitOutcome::Ready {
                                producer_id: meta.producer_id,
                                epoch: meta.epoch,
                            }
                        }
                    }
                }
            };
            Ok(outcome)
        })
        .await
    }

    /// Starts the transaction if needed and runs `f` on it; the caller persists it.
    fn ongoing(
        txns: &mut Txns,
        id: &str,
        producer_id: i64,
        epoch: i16,
        f: impl FnOnce(&mut TxnMeta),
    ) -> Result<(), ResponseError> {
        let meta = Self::check(&mut txns.by_id, id, producer_id, epoch)?;
        match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(ResponseError::ConcurrentTransactions)
            }
            TxnState::Ongoing => {}
            _ => {
                meta.state = TxnState::Ongoing;
                meta.start_ms = now_ms();
                meta.partitions.clear();
                meta.groups.clear();
                meta.offsets.clear();
            }
        }
        f(meta);
        meta.updated_ms = now_ms();
        Ok(())
    }

    pub async fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), ResponseError> {
        self.change(id, |txns| {
            Self::ongoing(txns, id, producer_id, epoch, |m| {
                m.partitions.extend(partitions.iter().cloned())
            })
        })
        .await
    }

    /// Transaction protocol 2 (KIP-890): a transactional produce adds its partition to the
    /// producer's transaction itself, starting the transaction if needed. Not async: it
    /// runs inside the partition's append, which must not see the batch before the
    /// partition is recorded in the transaction (or its markers would miss it).
    pub fn add_partition_implicitly(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), ResponseError> {
        let id = {
            let txns = self.lock();
            let Some(meta) = txns.by_producer(producer_id) else {
                return Err(ResponseError::InvalidTxnState);
            };
            if epoch < meta.epoch {
                return Err(ResponseError::InvalidProducerEpoch);
            }
            let key = (topic.to_string(), partition);
            if meta.epoch == epoch
                && meta.state == TxnState::Ongoing
                && meta.partitions.contains(&key)
            {
                return Ok(());
            }
            meta.id.clone()
        };
        self.change_blocking(&id, |txns| {
            Self::ongoing(txns, &id, producer_id, epoch, |m| {
                m.partitions.insert((topic.to_string(), partition));
            })
        })
    }

    /// Whether a partition is already in the producer's open transaction.
    pub fn has_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<bool, ResponseError> {
        let mut txns = self.lock();
        let meta = Self::check(&mut txns.by_id, id, producer_id, epoch)?;
        Ok(meta.state == TxnState::Ongoing
            && partitions.iter().all(|p| meta.partitions.contains(p)))
    }

    pub async fn add_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Result<(), ResponseError> {
        self.change(id, |txns| {
            Self::ongoing(txns, id, producer_id, epoch, |m| {
                m.groups.insert(group.to_string());
            })
        })
        .await
    }

    /// TxnOffsetCommit: the offsets become the group's only when the transaction commits.
    pub async fn commit_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        offsets: Vec<(String, i32, CommittedOffset)>,
        implicit: bool,
    ) -> Result<(), ResponseError> {
        if implicit {
            // Protocol 2 sends no AddOffsetsToTxn: the commit itself enrols the group.
            self.add_offsets(id, producer_id, epoch, group).await?;
        }
        self.change(id, |txns| {
            let meta = Self::check(&mut txns.by_id, id, producer_id, epoch)?;
            if meta.state != TxnState::Ongoing || !meta.groups.contains(group) {
                return Err(ResponseError::InvalidTxnState);
            }
            let pending = meta.offsets.entry(group.to_string()).or_default();
            for (topic, partition, o) in offsets {
                pending.entry(topic).or_default().insert(partition, o);
            }
            meta.updated_ms = now_ms();
            Ok(())
        })
        .await
    }

    /// Produce with a transactional batch: the partition must be in the producer's open
    /// transaction, at its current epoch. One lookup in the producer-id index.
    pub fn verify_produce(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), ResponseError> {
        let txns = self.lock();
        let Some(meta) = txns.by_producer(producer_id) else {
            return Err(ResponseError::InvalidTxnState);
        };
        if epoch < meta.epoch {
            return Err(ResponseError::InvalidProducerEpoch);
        }
        if meta.epoch != epoch
            || meta.state != TxnState::Ongoing
            || !meta.partitions.contains(&(topic.to_string(), partition))
        {
            return Err(ResponseError::InvalidTxnState);
        }
        Ok(())
    }

    /// EndTxn: moves to PrepareCommit/PrepareAbort (persisted) and says what to write.
    /// None when there is nothing to do: a retry of an end that already completed.
    ///
    /// With protocol 2 (`bump`) the epoch moves on at every end: markers carry the new
    /// epoch, which fences anything the producer still had in flight, and the producer
    /// continues with it. A retry from the epoch before is answered as done.
    ///
    /// A retry of an end whose markers could not be written yet (see `stall`) takes the
    /// transaction over and returns it to finish again; while another finisher has it, the
    /// answer is CONCURRENT_TRANSACTIONS, as Kafka's while its markers are on their way.
    pub async fn prepare_end(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        bump_epoch: bool,
        allocate: &Allocate<'_>,
    ) -> Result<(Option<Completion>, i64, i16), ResponseError> {
        self.change(id, |txns| {
            if let Some(meta) = txns.by_id.get(id) {
                let decided = matches!(
                    (meta.state, commit),
                    (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false)
                );
                let current = meta.producer_id == producer_id && meta.epoch == epoch;
                let before_bump =
                    bump_epoch && meta.last_producer_id == producer_id && meta.last_epoch == epoch;
                if decided && (current || before_bump) {
                    return match self.take_stalled(id) {
                        Some(c) => Ok((Some(c), meta.producer_id, meta.epoch)),
                        None => Err(ResponseError::ConcurrentTransactions),
                    };
                }
            }
            if bump_epoch {
                if let Some(meta) = txns.by_id.get(id) {
                    let done = matches!(
                        (meta.state, commit),
                        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false)
                    );
                    if done && meta.last_producer_id == producer_id && meta.last_epoch == epoch {
                        return Ok((None, meta.producer_id, meta.epoch));
                    }
                }
            }
            let index = &mut txns.by_producer;
            let meta = Self::check(&mut txns.by_id, id, producer_id, epoch)?;
            let plan = match (meta.state, commit) {
                (TxnState::Ongoing, _) => {
                    meta.state = if commit {
                        TxnState::PrepareCommit
                    } else {
                        TxnState::PrepareAbort
                    };
                    meta.updated_ms = now_ms();
                    let mut plan = completion(meta, commit);
                    if bump_epoch {
                        meta.last_producer_id = meta.producer_id;
                        meta.last_epoch = meta.epoch;
                        plan.epoch = meta.epoch + 1;
                        bump(meta, index, allocate)?;
                    }
                    Some(plan)
                }
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false)
                    if !bump_epoch =>
                {
                    return Ok((None, meta.producer_id, meta.epoch))
                }
                (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                    return Err(ResponseError::ConcurrentTransactions)
                }
                // Ending a transaction that never started: nothing to undo or to mark.
                (TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort, _)
                    if bump_epoch || !commit =>
                {
                    if bump_epoch {
                        meta.last_producer_id = meta.producer_id;
                        meta.last_epoch = meta.epoch;
                        bump(meta, index, allocate)?;
                        meta.state = if commit {
                            TxnState::CompleteCommit
                        } else {
                            TxnState::CompleteAbort
                        };
                        meta.updated_ms = now_ms();
                    }
                    None
                }
                _ => return Err(ResponseError::InvalidTxnState),
            };
            let (pid, e) = txns
                .by_id
                .get(id)
                .map(|m| (m.producer_id, m.epoch))
                .unwrap_or((producer_id, epoch));
            Ok((plan, pid, e))
        })
        .await
    }

    /// Records that the markers are written and the offsets applied.
    pub async fn complete(&self, c: &Completion) -> Result<(), ResponseError> {
        {
            let mut txns = self.lock();
            let Some(meta) = txns.by_id.get_mut(&c.id) else {
                return Ok(());
            };
            meta.state = if c.commit {
                TxnState::CompleteCommit
            } else {
                TxnState::CompleteAbort
            };
            meta.partitions.clear();
            meta.groups.clear();
            meta.offsets.clear();
            meta.updated_ms = now_ms();
        }
        self.persist(&c.id).await
    }

    /// Transactions a crash left between prepare and complete: finish them at start-up.
    pub fn unfinished(&self) -> Vec<Completion> {
        self.lock()
            .by_id
            .values()
            .filter_map(|m| match m.state {
                TxnState::PrepareCommit => Some(completion(m, true)),
                TxnState::PrepareAbort => Some(completion(m, false)),
                _ => None,
            })
            .collect()
    }

    /// Open transactions past their timeout: bumped (fencing their producer) and moved to
    /// PrepareAbort; the caller writes the markers. Long-idle ids are forgotten. The files
    /// are written before it returns.
    pub async fn expire(&self, allocate: &Allocate<'_>) -> Vec<Completion> {
        let now = now_ms();
        let idle_limit = self.settings.id_expiration.as_millis() as i64;
        let mut aborts = Vec::new();
        let mut forget = Vec::new();
        {
            let mut guard = self.lock();
            let txns = &mut *guard;
            for meta in txns.by_id.values_mut() {
                match meta.state {
                    TxnState::Ongoing if now - meta.start_ms > meta.timeout_ms as i64 => {
                        tracing::info!(transactional_id = %meta.id, "aborting a transaction past its timeout");
                        meta.last_producer_id = -1;
                        meta.last_epoch = -1;
                        if bump(meta, &mut txns.by_producer, allocate).is_err() {
                            continue;
                        }
                        meta.state = TxnState::PrepareAbort;
                        meta.updated_ms = now;
                        aborts.push(completion(meta, false));
                    }
                    TxnState::Empty | TxnState::CompleteAbort | TxnState::CompleteCommit
                        if now - meta.updated_ms > idle_limit =>
                    {
                        forget.push(meta.id.clone());
                    }
                    _ => {}
                }
            }
            for id in &forget {
                txns.remove(id);
            }
        }
        for id in aborts.iter().map(|c| &c.id).chain(&forget) {
            // A failure is logged; the abort goes ahead and is persisted at completion.
            let _ = self.persist(id).await;
        }
        aborts
    }

    /// Groups and partitions with offsets waiting in an open transaction (require_stable).
    pub fn pending_offsets(&self, group: &str) -> BTreeSet<(String, i32)> {
        self.lock()
            .by_id
            .values()
            .filter_map(|m| m.offsets.get(group))
            .flat_map(|topics| {
                topics
                    .iter()
                    .flat_map(|(t, ps)| ps.keys().map(move |p| (t.clone(), *p)))
            })
            .collect()
    }

    pub fn all(&self) -> Vec<TxnMeta> {
        let mut v: Vec<TxnMeta> = self.lock().by_id.values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    pub fn get(&self, id: &str) -> Option<TxnMeta> {
        self.lock().by_id.get(id).cloned()
    }
}

/// Next epoch, or a new producer id once the epoch is exhausted (re-indexed).
fn bump(
    meta: &mut TxnMeta,
    index: &mut HashMap<i64, String>,
    allocate: &dyn Fn() -> Result<i64, ResponseError>,
) -> Result<(), ResponseError> {
    if meta.epoch >= i16::MAX - 1 {
        let producer_id = allocate()?;
        unindex(index, meta);
        index.insert(producer_id, meta.id.clone());
        meta.producer_id = producer_id;
        meta.epoch = 0;
    } else {
        meta.epoch += 1;
    }
    Ok(())
}

fn completion(meta: &TxnMeta, commit: bool) -> Completion {
    Completion {
        id: meta.id.clone(),
        producer_id: meta.producer_id,
        epoch: meta.epoch,
        commit,
        partitions: meta.partitions.iter().cloned().collect(),
        offsets: if commit {
            meta.offsets.clone()
        } else {
            PendingOffsets::new()
        },
    }
}

#[cfg(test)]
mod tests;
