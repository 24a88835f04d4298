//! Durability: fsyncs of the active segment for acks that wait for one (`flush: always`),
//! of every segment on shutdown and by the interval flusher, and of rolled segments some
//! time after their roll; each moves the recovery point and, where acks wait for the fsync,
//! the high watermark.

use super::*;

impl Partition {
    /// Waits until everything up to `offset` (exclusive) is on disk. Producers that arrive
    /// while an fsync runs wait for the next one, which then covers all of them.
    pub async fn make_durable(&self, offset: i64) -> Result<(), ResponseError> {
        if self.durable_offset.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let _guard = self.flush_lock.lock().await;
        if self.durable_offset.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let active = self.state().log.active_file().map_err(|e| {
            tracing::error!(topic = %self.topic, partition = self.index, error = %e, "opening the active segment failed");
            ResponseError::KafkaStorageError
        })?;
        let Some((file, end)) = active else {
            return Ok(());
        };
        // Segments rolled since the last fsync hold acknowledged offsets below `end` too.
        let rolled = std::mem::take(&mut *self.unsynced_lock());
        let synced = tokio::task::spawn_blocking(move || {
            let synced = rolled
                .iter()
                .try_for_each(|(_, r)| r.sync())
                .and_then(|()| file.sync_data());
            (synced, rolled)
        })
        .await
        .map_err(|_| ResponseError::KafkaStorageError)?;
        if let (Err(e), rolled) = synced {
            // The rolled segments wait for the next fsync again.
            self.unsync_again(rolled);
            tracing::error!(topic = %self.topic, partition = self.index, error = %e, "fsync failed");
            return Err(ResponseError::KafkaStorageError);
        }
        self.durable_offset.fetch_max(end, Ordering::AcqRel);
        self.advance_high_watermark(end);
        Ok(())
    }

    /// fsyncs every segment (outside the partition lock: appends go on meanwhile); used on
    /// shutdown and by the interval flusher. Blocking: call it off the async threads.
    pub fn flush(&self) -> std::io::Result<()> {
        if !self.is_loaded() {
            return Ok(());
        }
        let plan = self.state().log.sync_plan();
        self.unsynced_lock().clear();
        plan.sync()?;
        self.flushed(plan.end_offset);
        Ok(())
    }

    /// The first step of a flush of many partitions at once (`Broker::flush_all`): what the
    /// log holds now, to record once the file system is synced. `None` before the log is
    /// open.
    pub fn flush_plan(&self) -> Option<Rolled> {
        if !self.is_loaded() {
            return None;
        }
        let plan = self.state().log.sync_plan();
        self.unsynced_lock().clear();
        Some(plan)
    }

    /// The last step of such a flush: everything up to `end` is on disk.
    pub fn flushed(&self, end: i64) {
        self.durable_offset.fetch_max(end, Ordering::AcqRel);
        self.advance_high_watermark(end);
    }

    /// fsyncs the rolled segments that are at least `age` old and moves the recovery point
    /// past them. Blocking: the segment flusher calls it off the async threads.
    pub fn sync_rolled(&self, age: Duration) -> std::io::Result<()> {
        let due: Vec<(Instant, Rolled)> = {
            let mut unsynced = self.unsynced_lock();
            let n = unsynced
                .iter()
                .take_while(|(at, _)| at.elapsed() >= age)
                .count();
            unsynced.drain(..n).collect()
        };
        let failed = due
            .iter()
            .enumerate()
            .find_map(|(i, (_, r))| r.sync().err().map(|e| (i, e)));
        let Some((i, e)) = failed else {
            return Ok(());
        };
        tracing::error!(topic = %self.topic, partition = self.index, error = %e, "fsync of a rolled segment failed");
        // This one and the rest are tried again on the flusher's next round.
        self.unsync_again(due.into_iter().skip(i));
        Err(e)
    }

    /// Puts rolled segments whose fsync failed back in front of the ones rolled since.
    fn unsync_again(&self, failed: impl IntoIterator<Item = (Instant, Rolled)>) {
        let mut unsynced = self.unsynced_lock();
        let later = std::mem::take(&mut *unsynced);
        unsynced.extend(failed);
        unsynced.extend(later);
    }

    /// Whether rolled segments wait for their fsync.
    pub fn has_unsynced_rolls(&self) -> bool {
        !self.unsynced_lock().is_empty()
    }

    pub(super) fn unsynced_lock(&self) -> MutexGuard<'_, Vec<(Instant, Rolled)>> {
        self.unsynced.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether anything was appended since the last flush.
    pub fn is_dirty(&self) -> bool {
        self.durable_offset.load(Ordering::Acquire) < self.log_end.load(Ordering::Acquire)
    }
}
