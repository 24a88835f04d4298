//! The broker: topics and their partitions, the coordinators (groups, transactions), the
//! replica manager (the one path to partition data) and the background loops. `Broker` is a
//! cheap-to-clone handle.
//!
//! Writes no files itself: topics, partitions, producer ids, groups and transactions each
//! keep their own (see those modules).

pub mod archive_deletions;
pub mod archive_source;
pub mod compaction;
pub mod configs;
pub mod dynamic_configs;
pub mod groups;
pub mod local_retention;
pub mod maintenance;
pub mod partition;
pub mod producer_ids;
pub mod producer_state;
pub mod replica_manager;
pub mod state_files;
pub mod topics;
pub mod transactions;

use crate::config::Config;
use dashmap::DashMap;
use kafka_protocol::error::ResponseError;
use partition::Partition;
use replica_manager::ReplicaManager;

use std::sync::Arc;
pub use topics::Topic;
use uuid::Uuid;

#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

pub struct Inner {
    pub config: Config,
    pub node_id: i32,
    pub topics: DashMap<String, Arc<Topic>>,
    pub topic_ids: DashMap<Uuid, String>,
    /// Serialises topic creation and deletion (and their files).
    admin: tokio::sync::Mutex<()>,
    producer_ids: producer_ids::ProducerIds,
    pub groups: groups::GroupCoordinator,
    pub txns: transactions::TxnCoordinator,
    /// Appends, fetches and offset lookups: local log or archive.
    pub replica_manager: ReplicaManager,
    /// Background loops and the handles that stop them.
    pub maintenance: maintenance::Maintenance,
    /// The archive, when tiering is configured.
    tier: Option<Arc<crate::tier::Tier>>,
    /// ACL checks, when `authorizer.class.name` names one; `None` allows everything.
    pub authorizer: Option<crate::security::authorizer::Authorizer>,
    /// SASL mechanisms per listener and the SCRAM credentials.
    pub sasl: Arc<crate::security::sasl::Sasl>,
}

impl std::ops::Deref for Broker {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

/// Loads the SCRAM credentials, creates the config's start-up users, and builds the
/// mechanisms of every SASL listener so that a bad setting stops the start.
fn open_sasl(
    config: &Config,
    meta_dir: &std::path::Path,
) -> anyhow::Result<Arc<crate::security::sasl::Sasl>> {
    use crate::security::sasl;
    let scram = sasl::credentials::ScramCredentials::open(meta_dir.join("scram-credentials.json"))?;
    sasl::add_startup_users(&scram, &config.scram_users)?;
    let sasl = sasl::Sasl::new(config.props.clone(), scram);
    for l in config.listeners.iter().filter(|l| l.protocol.uses_sasl()) {
        sasl.check_listener(&l.name)
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(Arc::new(sasl))
}

impl Broker {
    /// Loads every topic from the data directory, recovering each partition's log.
    pub fn open(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)?;
        let meta_dir = config.data_dir.join(".strata");
        std::fs::create_dir_all(meta_dir.join("topics"))?;
        let producer_ids = producer_ids::ProducerIds::open(meta_dir.join("producer-id-block"))?;
        let groups = groups::GroupCoordinator::open(
            meta_dir.join("groups"),
            groups::GroupSettings::from_config(&config),
        )?;
        let txns = transactions::TxnCoordinator::open(
            meta_dir.join("transactions"),
            transactions::TxnSettings::from_config(&config),
        )?;
        let tier = crate::tier::Tier::from_config(&config)?;
        let authorizer = crate::security::authorizer::Authorizer::from_config(
            &config.props.get("authorizer.class.name"),
            crate::security::authorizer::AuthorizerSettings {
                super_users: crate::security::authorizer::AuthorizerSettings::parse_super_users(
                    &config.props.get("super.users"),
                )
                .map_err(anyhow::Error::msg)?,
                allow_everyone_if_no_acl_found: config.props.bool("allow.everyone.if.no.acl.found"),
            },
            &meta_dir,
        )?;
        let sasl = open_sasl(&config, &meta_dir)?;
        let broker = Broker {
            inner: Arc::new(Inner {
                node_id: config.props.int("node.id") as i32,
                topics: DashMap::new(),
                topic_ids: DashMap::new(),
                admin: tokio::sync::Mutex::new(()),
                producer_ids,
                groups,
                txns,
                replica_manager: ReplicaManager::new(tier.clone()),
                maintenance: maintenance::Maintenance::default(),
                tier,
                authorizer,
                sasl,
                config,
            }),
        };
        // Run-time changes to the broker's defaults, before the topics that follow them.
        broker.load_dynamic_configs()?;
        for topic in topics::load_all(&broker.config)? {
            broker.topic_ids.insert(topic.id, topic.name.clone());
            broker.topics.insert(topic.name.clone(), Arc::new(topic));
        }
        Ok(broker)
    }

    /// Opens every partition's log not opened yet (start-up recovery), on blocking threads,
    /// one per core. A log that cannot be opened is logged; its partition answers
    /// KAFKA_STORAGE_ERROR until it can be.
    pub async fn open_all_logs(&self) {
        use futures::StreamExt;
        const CHUNK: usize = 64;
        let started = std::time::Instant::now();
        let pending: Vec<Arc<Partition>> = self
            .topics()
            .iter()
            .flat_map(|t| t.partitions.iter().filter(|p| !p.is_loaded()).cloned())
            .collect();
        let count = pending.len();
        let chunks: Vec<Vec<Arc<Partition>>> = pending.chunks(CHUNK).map(|c| c.to_vec()).collect();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let failed: usize = futures::stream::iter(chunks)
            .map(|chunk| async move {
                tokio::task::spawn_blocking(move || {
                    chunk
                        .iter()
                        .filter(|p| match p.load() {
                            Ok(()) => false,
                            Err(e) => {
                                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "opening the log failed");
                                true
                            }
                        })
                        .count()
                })
                .await
                .unwrap_or(0)
            })
            .buffer_unordered(threads)
            .fold(0, |a, b| async move { a + b })
            .await;
        tracing::info!(
            partitions = count,
            failed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "opened the partitions' logs"
        );
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.get(name).map(|t| t.clone())
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        let name = self.topic_ids.get(&id)?.clone();
        self.topic(&name)
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.topic(topic)?.partition(index)
    }

    /// Every topic, sorted by name for stable metadata answers.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.topics.iter().map(|t| t.value().clone()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Creates a topic (or, with `validate_only`, checks that it could be created).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: Vec<(String, Option<String>)>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, (ResponseError, String)> {
        let _admin = self.admin.lock().await;
        topics::validate_name(name).map_err(|m| (ResponseError::InvalidTopicException, m))?;
        if self.topics.contains_key(name) {
            return Err((
                ResponseError::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        let partitions = if partitions == -1 {
            self.config.props.int("num.partitions") as i32
        } else {
            partitions
        };
        if partitions < 1 {
            return Err((
                ResponseError::InvalidPartitions,
                "Number of partitions must be larger than 0.".into(),
            ));
        }
        let rf = if replication_factor == -1 {
            self.config.props.int("default.replication.factor") as i16
        } else {
            replication_factor
        };
        if rf < 1 {
            return Err((
                ResponseError::InvalidReplicationFactor,
                "Replication factor must be larger than 0, or -1 to use the default value.".into(),
            ));
        }
        if rf > 1 && self.config.strict_replication_factor {
            return Err((
                ResponseError::InvalidReplicationFactor,
                format!("Replication factor: {rf} larger than available brokers: 1."),
            ));
        }
        if rf > 1 && !validate_only {
            tracing::info!(
                topic = name,
                replication_factor = rf,
                "a single broker keeps one replica of each partition"
            );
        }
        let configs =
            topics::validate_configs(configs).map_err(|m| (ResponseError::InvalidConfig, m))?;
        let default_policy = self
            .config
            .props
            .topic_defaults()
            .get("cleanup.policy")
            .cloned()
            .unwrap_or_default();
        topics::check_remote_storage_policy(&configs, &default_policy)
            .map_err(|m| (ResponseError::InvalidConfig, m))?;
        let topic = Topic::new_meta(name, Uuid::new_v4(), partitions, configs);
        if validate_only {
            return Ok(Arc::new(topic));
        }
        let topic = topic.create(&self.config).map_err(|e| {
            (
                ResponseError::KafkaStorageError,
                format!("creating {name}: {e}"),
            )
        })?;
        let topic = Arc::new(topic);
        self.topic_ids.insert(topic.id, topic.name.clone());
        self.topics.insert(topic.name.clone(), topic.clone());
        tracing::info!(topic = name, id = %topic.id, partitions, "created topic");
        maintenance::start_topic(self, &topic);
        Ok(topic)
    }

    /// Grows a topic to `count` partitions (CreatePartitions), or with `validate_only` checks
    /// that it could. `assignment` is Kafka's manual assignment of the new partitions, one
    /// replica list each; on one broker each must be this broker alone, as the existing
    /// partitions are. Errors carry Kafka's code and message (`None`: Kafka sends none).
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignment: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), (ResponseError, Option<String>)> {
        let _admin = self.admin.lock().await;
        let Some(topic) = self.topic(name) else {
            return Err((ResponseError::UnknownTopicOrPartition, None));
        };
        let current = topic.partition_count;
        topics::check_partition_growth(name, current, count, assignment.as_deref(), self.node_id)
            .map_err(|(code, msg)| (code, Some(msg)))?;
        if validate_only {
            return Ok(());
        }
        let (t, config) = (topic.clone(), self.config.clone());
        let grown = tokio::task::spawn_blocking(move || t.with_partitions(&config, count))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| {
                tracing::error!(topic = name, error = %e, "adding partitions failed");
                (
                    ResponseError::KafkaStorageError,
                    Some(format!("adding partitions to {name}: {e}")),
                )
            })?;
        let grown = Arc::new(grown);
        self.topics.insert(name.to_string(), grown.clone());
        tracing::info!(topic = name, from = current, to = count, "added partitions");
        maintenance::start_partitions(self, &grown, current as usize);
        Ok(())
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<Uuid, ResponseError> {
        let _admin = self.admin.lock().await;
        let Some((_, topic)) = self.topics.remove(name) else {
            return Err(ResponseError::UnknownTopicOrPartition);
        };
        self.topic_ids.remove(&topic.id);
        self.maintenance.stop_topic(topic.id);
        let (t, config) = (topic.clone(), self.config.clone());
        let archived = self.tier.is_some();
        let deleted = tokio::task::spawn_blocking(move || {
            if archived {
                // Before the metadata goes, so that no crash forgets the objects.
                archive_deletions::record(&config.data_dir, &t.name, t.id)?;
            }
            t.delete_files(&config)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        if let Err(e) = deleted {
            tracing::error!(topic = name, error = %e, "deleting topic files");
            return Err(ResponseError::KafkaStorageError);
        }
        tracing::info!(topic = name, "deleted topic");
        self.groups.forget_topic(name).await;
        if archived {
            maintenance::delete_archived_topic(
                self,
                archive_deletions::PendingDeletion {
                    name: topic.name.clone(),
                    id: topic.id,
                },
            );
        }
        Ok(topic.id)
    }

    /// The data directory as Kafka's one log dir: (absolute path, total bytes, usable bytes
    /// of its file system). Blocking (statvfs): call it off the async threads.
    pub fn log_dir_space(&self) -> std::io::Result<(String, i64, i64)> {
        let dir = std::path::absolute(&self.config.data_dir)?;
        let (total, usable) = filesystem_space(&dir)?;
        Ok((dir.to_string_lossy().into_owned(), total, usable))
    }

    pub fn allocate_producer_id(&self) -> Result<i64, ResponseError> {
        self.producer_ids.next().map_err(|e| {
            tracing::error!(error = %e, "persisting producer id block");
            ResponseError::KafkaStorageError
        })
    }

    /// Writes a transaction's markers to its partitions, applies its offsets on commit,
    /// then records it complete. Safe to repeat after a crash: a second marker for a
    /// transaction already closed changes nothing a consumer sees.
    pub async fn finish_transaction(
        &self,
        c: &transactions::Completion,
    ) -> Result<(), ResponseError> {
        let now = crate::clock::now_ms();
        let mut waits = Vec::new();
        for (topic, index) in &c.partitions {
            let Some(partition) = self.partition(topic, *index) else {
                continue; // deleted since: nothing left to mark
            };
            let offset = partition
                .append_marker(c.producer_id, c.epoch, c.commit, now)
                .await?;
            if partition.acks_wait_for_fsync() {
                waits.push((partition, offset + 1));
            }
        }
        for (partition, offset) in waits {
            partition.make_durable(offset).await?;
        }
        for (group, topics) in &c.offsets {
            let offsets = topics
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |(p, o)| (t.clone(), *p, o.clone())))
                .collect();
            self.groups.commit_transactional(group, offsets).await?;
        }
        self.txns.complete(c).await?;
        tracing::debug!(transactional_id = %c.id, commit = c.commit, partitions = c.partitions.len(), "transaction finished");
        Ok(())
    }

    /// `finish_transaction`; when it fails (a full disk), the transaction stays decided and
    /// is kept to be finished later: by the client's retried EndTxn or InitProducerId, or by
    /// the transaction loop. The answer is then CONCURRENT_TRANSACTIONS, which clients
    /// retry, as Kafka answers while a transaction's markers are still on their way.
    pub async fn finish_or_stall(&self, c: &transactions::Completion) -> Result<(), ResponseError> {
        match self.finish_transaction(c).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(transactional_id = %c.id, commit = c.commit, error = ?e, "transaction markers not written; finishing it later");
                self.txns.stall(c.clone());
                Err(ResponseError::ConcurrentTransactions)
            }
        }
    }

    /// InitProducerId for a transactional id, aborting the previous producer's open
    /// transaction first.
    pub async fn init_transactional(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ResponseError> {
        let alloc = || self.allocate_producer_id();
        if let Some(c) = self.txns.take_stalled(id) {
            self.finish_or_stall(&c).await?;
        }
        for _ in 0..3 {
            match self.txns.init(id, timeout_ms, expected, &alloc).await? {
                transactions::InitOutcome::Ready { producer_id, epoch } => {
                    return Ok((producer_id, epoch))
                }
                transactions::InitOutcome::AbortFirst(c) => self.finish_or_stall(&c).await?,
            }
        }
        Err(ResponseError::ConcurrentTransactions)
    }

    /// fsyncs every partition with unflushed data. Blocking: call it off the async threads.
    pub fn flush_all(&self) {
        /// Beyond this many partitions to flush, one sync of the file system costs less
        /// than an fsync per file (five per partition with its recovery point).
        const FSYNC_PER_FILE_UP_TO: usize = 8;
        let dirty: Vec<Arc<Partition>> = self
            .topics()
            .iter()
            .flat_map(|t| t.partitions.iter().filter(|p| p.is_dirty()).cloned())
            .collect();
        if dirty.len() <= FSYNC_PER_FILE_UP_TO {
            for p in dirty {
                if let Err(e) = p.flush() {
                    tracing::error!(topic = %p.topic, partition = p.index, error = %e, "flush failed");
                }
            }
            return;
        }
        let started = std::time::Instant::now();
        let plans: Vec<_> = dirty
            .iter()
            .filter_map(|p| p.flush_plan().map(|plan| (p, plan)))
            .collect();
        // Segments first, then the recovery points that vouch for them.
        let data_dir = &self.config.data_dir;
        if let Err(e) = crate::checkpoint::sync_file_system(data_dir) {
            tracing::error!(error = %e, "flush failed");
            return;
        }
        for (p, plan) in &plans {
            if let Err(e) = plan.record(false) {
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "recording the recovery point failed");
            }
        }
        if let Err(e) = crate::checkpoint::sync_file_system(data_dir) {
            tracing::error!(error = %e, "flush failed");
            return;
        }
        for (p, plan) in &plans {
            p.flushed(plan.end_offset);
        }
        tracing::debug!(
            partitions = plans.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "flushed"
        );
    }

    /// Restores topics found in the archive but not on local disk: same names, ids,
    /// partitions and configs; logs continue at the archive's end offsets.
    pub async fn restore_from_archive(&self) -> anyhow::Result<()> {
        let Some(tier) = self.tier.clone() else {
            return Ok(());
        };
        // Only an empty broker restores: a broker with topics of its own already knows them,
        // and its start-up should not wait on the store.
        if !self.topics.is_empty() {
            return Ok(());
        }
        let deleted: std::collections::HashSet<Uuid> =
            archive_deletions::load(&self.config.data_dir)
                .into_iter()
                .map(|p| p.id)
                .collect();
        for archived in crate::tier::restore::find_topics(&tier).await? {
            let topic = match Topic::from_meta_yaml(&archived.meta_yaml) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable topic metadata in the archive");
                    continue;
                }
            };
            if self.topic(&topic.name).is_some() || self.topic_by_id(topic.id).is_some() {
                continue;
            }
            if deleted.contains(&topic.id) {
                tracing::info!(topic = %topic.name, "not restoring a deleted topic whose objects are still being deleted");
                continue;
            }
            if archived.manifests.len() != topic.partition_count as usize {
                tracing::warn!(topic = %topic.name, "archived partitions do not match the topic's metadata");
                continue;
            }
            let starts = archived.manifests.iter().map(|m| m.next_offset()).collect();
            let config = self.config.clone();
            let name = topic.name.clone();
            let topic =
                tokio::task::spawn_blocking(move || topic.restore(&config, starts)).await??;
            for (p, m) in topic.partitions.iter().zip(archived.manifests) {
                p.set_manifest(m);
            }
            tracing::info!(topic = %name, "restored topic from the archive");
            let topic = Arc::new(topic);
            self.topic_ids.insert(topic.id, topic.name.clone());
            self.topics.insert(topic.name.clone(), topic.clone());
        }
        Ok(())
    }

    /// Starts the background loops (see `maintenance`).
    pub fn spawn_maintenance(&self) {
        maintenance::start(self);
    }

    /// Stops the background loops, then fsyncs every log: the end of a clean shutdown.
    pub async fn shut_down(&self) {
        self.maintenance.stop_all();
        let b = self.clone();
        let _ = tokio::task::spawn_blocking(move || b.flush_all()).await;
    }
}

/// (total, usable) bytes of the file system holding `dir`, as Java's FileStore reports
/// them: blocks times fragment size, and the blocks available to an unprivileged user.
/// Sizes past `i64::MAX` read as `i64::MAX`, as Kafka does.
fn filesystem_space(dir: &std::path::Path) -> std::io::Result<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `path` is a valid NUL-terminated string and `st` a plain struct statvfs fills.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut st) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        st
    };
    let bytes = |blocks: u64| {
        let n = (blocks as u128) * (st.f_frsize as u128);
        i64::try_from(n).unwrap_or(i64::MAX)
    };
    Ok((bytes(st.f_blocks as u64), bytes(st.f_bavail as u64)))
}

/// A broker with default settings on a fresh temporary data directory, for tests.
#[cfg(test)]
pub fn test_broker() -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().expect("tmp");
    let overrides = crate::config::Overrides {
        data_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let config = Config::load(None, overrides).expect("config");
    (dir, Broker::open(config).expect("broker"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The local-directory archive's copy of a topic's `topic.yaml`.
    fn archived_meta(dir: &std::path::Path, name: &str, id: Uuid) -> std::path::PathBuf {
        dir.join("tier")
            .join("strata")
            .join(format!("{name}-{id}"))
            .join("topic.yaml")
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn start_up_resumes_recorded_archive_deletions_of_deleted_topics_only() {
        let (dir, broker) = test_broker();
        let tier = broker.tier.clone().expect("the default local archive");
        let kept = broker
            .create_topic("kept", 1, 1, Vec::new(), false)
            .await
            .expect("create");
        let gone = Uuid::from_u128(42);
        for (name, id) in [("kept", kept.id), ("gone", gone)] {
            tier.put_topic(name, id, format!("name: {name}\n"))
                .await
                .expect("put");
            // What DeleteTopics records first; for "kept" a kill came before its metadata went.
            archive_deletions::record(dir.path(), name, id).expect("record");
        }
        broker.maintenance.stop_all();
        drop(broker);

        let restarted = Broker::open(kept_config(dir.path())).expect("reopen");
        restarted.spawn_maintenance();
        assert!(archive_deletions::load(dir.path())
            .iter()
            .all(|p| p.id != kept.id));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while archived_meta(dir.path(), "gone", gone).exists()
            || !archive_deletions::load(dir.path()).is_empty()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the deleted topic's objects are still there"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(
            archived_meta(dir.path(), "kept", kept.id).exists(),
            "a topic that was never deleted lost its archived objects"
        );
        restarted.maintenance.stop_all();
    }

    fn kept_config(dir: &std::path::Path) -> Config {
        let overrides = crate::config::Overrides {
            data_dir: Some(dir.to_path_buf()),
            ..Default::default()
        };
        Config::load(None, overrides).expect("config")
    }
}
