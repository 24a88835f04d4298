//! Opening a partition's log: a partition exists first without touching a file
//! (`unopened`), and its log is opened and its tail recovered on first use or by the
//! start-up loader in the background (`load`), so a broker with many partitions serves at
//! once and nothing reads or writes an unrecovered log.

use super::*;

impl Partition {
    /// The partition, its log not opened yet: no file is touched. The log is opened (and
    /// its tail recovered) by `load`, which the first use of the partition calls, or the
    /// start-up loader in the background, so a broker with many partitions serves at once.
    pub fn unopened(
        topic: &str,
        topic_id: Uuid,
        index: i32,
        dir: &Path,
        config: LogConfig,
        hw_after_fsync: bool,
        start_offset: i64,
    ) -> Self {
        Self {
            topic: topic.to_string(),
            topic_id,
            index,
            state: Mutex::new(State {
                log: Log::unopened(dir, config.clone()),
                producers: ProducerStates::default(),
            }),
            pending: Mutex::new(Some(PendingOpen {
                config,
                start_offset,
            })),
            loaded: AtomicBool::new(false),
            opened: Notify::new(),
            flush_lock: tokio::sync::Mutex::new(()),
            durable_offset: AtomicI64::new(0),
            log_end: AtomicI64::new(0),
            high_watermark: AtomicI64::new(0),
            hw_after_fsync,
            local_start: AtomicI64::new(0),
            start_floor: AtomicI64::new(0),
            start_writer: Mutex::new(()),
            dir: dir.to_path_buf(),
            remote_start: AtomicI64::new(-1),
            remote_end: AtomicI64::new(-1),
            manifest: Mutex::new(None),
            awaiting_manifest: AtomicBool::new(false),
            rolled: Notify::new(),
            high_watermark_moved: watch::channel(()).0,
            unsynced: Mutex::new(Vec::new()),
            first_unstable: AtomicI64::new(i64::MAX),
            traffic: Traffic::default(),
        }
    }

    /// Partition 0 of `topic`, outside any broker's topics (no topic id, log starting at 0,
    /// acks not waiting for an fsync), its log opened now: its tail recovered and producer
    /// state replayed. For unit tests and the fuzz targets, which need a partition on
    /// their own.
    pub fn open(topic: &str, dir: &Path, config: LogConfig) -> std::io::Result<Self> {
        let p = Self::unopened(topic, Uuid::nil(), 0, dir, config, false, 0);
        p.load()?;
        Ok(p)
    }

    /// Whether the log is open (recovered); `false` until `load` ran.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Opens and recovers the log unless that is done. Concurrent callers wait for the
    /// one doing it. Blocking; from an async thread the runtime is told, so that the other
    /// connections move to another thread meanwhile.
    pub fn load(&self) -> std::io::Result<()> {
        if self.is_loaded() {
            return Ok(());
        }
        let on_worker = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if on_worker {
            tokio::task::block_in_place(|| self.load_now())
        } else {
            self.load_now()
        }
    }

    fn load_now(&self) -> std::io::Result<()> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let Some(args) = pending.as_ref() else {
            // Loaded meanwhile, or the partition was deleted.
            return Ok(());
        };
        let started = Instant::now();
        let (log, producers, floor) = self.recover(args)?;
        let end = log.next_offset();
        let start = log.log_start_offset();
        let first_unstable = producers.first_unstable().unwrap_or(i64::MAX);
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = State { log, producers };
        self.durable_offset.store(end, Ordering::Release);
        self.log_end.store(end, Ordering::Release);
        self.high_watermark.store(end, Ordering::Release);
        self.local_start.store(start, Ordering::Release);
        self.start_floor.fetch_max(floor, Ordering::AcqRel);
        self.first_unstable.store(first_unstable, Ordering::Release);
        *pending = None;
        self.loaded.store(true, Ordering::Release);
        self.opened.notify_waiters();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if elapsed_ms >= 100 {
            tracing::info!(topic = %self.topic, partition = self.index, elapsed_ms, "opened the log");
        }
        Ok(())
    }

    /// Waits until the log is open (by the start-up loader or a request), without opening
    /// it: a partition's background loops start their work there.
    pub async fn wait_loaded(&self) {
        loop {
            let opened = self.opened.notified();
            if self.is_loaded() {
                return;
            }
            opened.await;
        }
    }

    /// `load`, for the paths that cannot answer an error: a failure is logged and the
    /// partition stays without a log (appends fail with KAFKA_STORAGE_ERROR); the next use
    /// tries again.
    pub(super) fn ensure_loaded(&self) {
        if self.is_loaded() {
            return;
        }
        if let Err(e) = self.load() {
            tracing::error!(topic = %self.topic, partition = self.index, error = %e, "opening the log failed");
        }
    }

    /// `load` for request paths: a log that cannot be opened is Kafka's storage error.
    pub fn check_online(&self) -> Result<(), ResponseError> {
        self.load().map_err(|e| {
            tracing::error!(topic = %self.topic, partition = self.index, error = %e, "opening the log failed");
            ResponseError::KafkaStorageError
        })
    }

    /// Opens the log in `dir` and replays its producers; also returns the checkpointed log
    /// start. Writes Kafka's `partition.metadata` when it is missing.
    fn recover(&self, args: &PendingOpen) -> std::io::Result<(Log, ProducerStates, i64)> {
        let (topic, index, dir) = (self.topic.as_str(), self.index, self.dir.as_path());
        std::fs::create_dir_all(dir)?;
        // Not fsynced: derived from the topic's metadata, it is written again by the next
        // start if a crash loses it.
        let pm = dir.join("partition.metadata");
        if !pm.exists() {
            crate::checkpoint::write_replacing(
                &pm,
                format!(
                    "version: 0\ntopic_id: {}\n",
                    crate::broker::topics::kafka_uuid(self.topic_id)
                )
                .as_bytes(),
                false,
            )?;
        }
        // Producer state from the newest snapshot the recovery point vouches for, then the
        // batches after it; without one, from the whole log.
        let (mut producers, from) =
            match producer_state::latest_snapshot(dir, crate::log::read_recovery_point(dir)) {
                Some((offset, states)) => (states, offset),
                None => (ProducerStates::default(), i64::MIN),
            };
        let (mut log, report) = Log::open_at(
            dir,
            args.config.clone(),
            args.start_offset,
            &mut |b: &RecordBatch<'_>| {
                if b.base_offset() < from {
                    return;
                }
                producers.replay(b);
            },
        )?;
        let floor = crate::log::read_log_start_offset(dir).unwrap_or(0);
        if log.next_offset() < floor {
            // The records up to the checkpointed start were not durable; Kafka then starts
            // an empty log there, never below it.
            tracing::warn!(
                topic,
                partition = index,
                log_end = log.next_offset(),
                log_start = floor,
                "log ends below its start offset; starting it empty at the start"
            );
            log.truncate_fully_and_start_at(floor)?;
            producers = ProducerStates::default();
        }
        // Finishes a deletion a crash interrupted after the checkpoint was written.
        for seg in log.take_segments_below(floor) {
            seg.delete()?;
        }
        remove_snapshots_below(dir, log.log_start_offset());
        // Aborted transactions, from the replay and from every local `.txnindex`. The replay
        // misses one whose records lie below the local log start (archived and deleted
        // locally) while its marker is local, unless a snapshot carried it open; the files
        // miss one whose entry a kill kept from being written after its marker, which gets
        // it now (else the archived copy of the segment would lack it too). Entries past a
        // recovered tail are not taken.
        let end = log.next_offset();
        let key = |a: &crate::log::txn_index::AbortedTxn| (a.producer_id, a.last_offset);
        let on_disk = crate::log::txn_index::read_all(dir);
        let written: std::collections::HashSet<(i64, i64)> = on_disk.iter().map(key).collect();
        let replayed: std::collections::HashSet<(i64, i64)> =
            producers.aborted.iter().map(key).collect();
        let unwritten: Vec<_> = producers
            .aborted
            .iter()
            .filter(|a| !written.contains(&key(a)))
            .copied()
            .collect();
        if !unwritten.is_empty() {
            tracing::warn!(
                topic,
                partition = index,
                entries = unwritten.len(),
                "restoring .txnindex entries a crash kept from being written"
            );
            log.restore_txn_index(&unwritten)?;
        }
        producers.aborted.extend(
            on_disk
                .into_iter()
                .filter(|a| a.last_offset < end && !replayed.contains(&key(a))),
        );
        producers.aborted.sort_by_key(|a| a.last_offset);
        producers.trim_aborted(floor);
        if report.truncated_bytes > 0 {
            tracing::warn!(
                topic,
                partition = index,
                truncated_bytes = report.truncated_bytes,
                "recovery truncated a torn or corrupt tail"
            );
        }
        Ok((log, producers, floor))
    }
}
