//! Committed offsets: OffsetCommit (checked against the member's generation or epoch),
//! transactional commits applied at their commit marker, OffsetFetch, OffsetDelete, and
//! Kafka's offsets expiry (KIP-211).
//!
//! # Files
//! `<data_dir>/.strata/groups/<hex of group id>.yaml`, one `OffsetsFile` per group: the
//! group id, its protocol type, when it became empty, and topic → partition → offset.
//! A commit is answered only after the file holding it is in place; one whose file cannot
//! be written (a full disk) is taken back from memory and answered NOT_COORDINATOR.
//!
//! # Crash consistency
//! The file is replaced whole by a rename, so a crash leaves the last answered commit or a
//! later one, never a mix; with `flush: always` it is fsynced before the answer too.

use super::{Group, GroupCoordinator, GroupKind, GroupState};
use crate::clock::now_ms;
use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    /// Milliseconds since the epoch; what offsets expiry counts from.
    #[serde(default = "now_ms")]
    pub commit_timestamp: i64,
}

/// The format of a group's file.
#[derive(Default, Serialize, Deserialize)]
pub(super) struct OffsetsFile {
    pub(super) group: String,
    /// Set once the group has used group management; its offsets then expire counting from
    /// when it became empty, not from each commit (Kafka's KIP-211 rule).
    #[serde(default)]
    pub(super) protocol_type: Option<String>,
    #[serde(default)]
    pub(super) empty_since: Option<i64>,
    offsets: BTreeMap<String, BTreeMap<i32, CommittedOffset>>,
}

/// (topic, partition, the offset stored, the one it replaced).
type Replaced = (String, i32, CommittedOffset, Option<CommittedOffset>);

impl Group {
    /// Kafka's `validateOffsetCommit` for both protocols; `version` is the OffsetCommit
    /// version, `None` for a TxnOffsetCommit.
    pub(super) fn check_commit(
        &self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        version: Option<i16>,
    ) -> Result<(), ResponseError> {
        let transactional = version.is_none();
        if self.kind == GroupKind::Consumer {
            if generation < 0 && self.consumer.members.is_empty() {
                return Ok(());
            }
            if transactional && generation == -1 && member_id.is_empty() && instance_id.is_none() {
                return Ok(());
            }
            let m = self
                .consumer
                .members
                .get(member_id)
                .ok_or(ResponseError::UnknownMemberId)?;
            if version.is_some_and(|v| v < 9) {
                // KIP-848 members commit with OffsetCommit v9 and their member epoch.
                return Err(ResponseError::UnsupportedVersion);
            }
            if generation != m.epoch {
                return Err(ResponseError::StaleMemberEpoch);
            }
            return Ok(());
        }
        if generation < 0 && self.state == GroupState::Empty {
            // Simple consumers (assign()) and admin clients commit to an empty group.
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            if let Some(instance) = instance_id {
                match self.static_member(instance) {
                    None => return Err(ResponseError::UnknownMemberId),
                    Some(holder) if holder != member_id => {
                        return Err(ResponseError::FencedInstanceId)
                    }
                    Some(_) => {}
                }
            }
            if !self.members.contains_key(member_id) {
                return Err(ResponseError::UnknownMemberId);
            }
            if generation != self.generation {
                return Err(ResponseError::IllegalGeneration);
            }
        } else if !transactional && self.state != GroupState::Empty {
            return Err(ResponseError::UnknownMemberId);
        }
        if !transactional && self.state == GroupState::CompletingRebalance {
            // The member knows its new generation from the JoinGroup but not yet its
            // assignment: Kafka asks it to finish the rebalance first. A commit while
            // preparing a rebalance (an eager consumer's, in its revoke callback) is kept.
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Stores the offsets; returns what each replaced, for `unstore`.
    fn store(&mut self, offsets: Vec<(String, i32, CommittedOffset)>) -> Vec<Replaced> {
        offsets
            .into_iter()
            .map(|(topic, partition, committed)| {
                let old = self
                    .offsets
                    .entry(topic.clone())
                    .or_default()
                    .insert(partition, committed.clone());
                (topic, partition, committed, old)
            })
            .collect()
    }

    /// Takes back what `store` stored, where no later commit replaced it since.
    fn unstore(&mut self, replaced: Vec<Replaced>) {
        for (topic, partition, stored, old) in replaced {
            let Some(parts) = self.offsets.get_mut(&topic) else {
                continue;
            };
            if parts.get(&partition) != Some(&stored) {
                continue;
            }
            match old {
                Some(old) => {
                    parts.insert(partition, old);
                }
                None => {
                    parts.remove(&partition);
                    if parts.is_empty() {
                        self.offsets.remove(&topic);
                    }
                }
            }
        }
    }

    /// A group as its file left it. Members do not survive a restart: the group is empty
    /// from now on, or since it was last seen empty.
    pub(super) fn from_file(file: OffsetsFile) -> Self {
        let mut g = Group::new(&file.group);
        g.offsets = file.offsets;
        g.protocol_type = file.protocol_type;
        g.empty_since = Some(file.empty_since.unwrap_or_else(now_ms));
        g
    }

    pub(super) fn file(&self) -> OffsetsFile {
        let protocol_type = match self.kind {
            GroupKind::Consumer => Some("consumer".to_string()),
            GroupKind::Classic => self.protocol_type.clone(),
        };
        OffsetsFile {
            group: self.id.clone(),
            protocol_type,
            empty_since: self.empty_since,
            offsets: self.offsets.clone(),
        }
    }
}

impl GroupCoordinator {
    /// Commits offsets. A member of an active group must name its current generation (or,
    /// in a consumer-protocol group, its member epoch); an empty group accepts commits from
    /// anyone (simple consumers with assign(), admin clients). Checked as Kafka's
    /// `validateOffsetCommit` checks them.
    pub async fn commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        version: i16,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<(), ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let replaced = {
            let mut groups = self.lock();
            if !groups.contains_key(group_id) {
                if generation >= 0 {
                    // A member of a group that no longer exists (deleted, or forgotten by
                    // a restart): Kafka's answer makes the client rejoin.
                    return Err(if version >= 9 {
                        ResponseError::GroupIdNotFound
                    } else {
                        ResponseError::IllegalGeneration
                    });
                }
                groups.insert(group_id.to_string(), Group::new(group_id));
            }
            let Some(group) = groups.get_mut(group_id) else {
                return Err(ResponseError::CoordinatorNotAvailable);
            };
            group.check_commit(generation, member_id, instance_id, Some(version))?;
            // A classic member's commit keeps its session alive, as a heartbeat would.
            if matches!(
                group.state,
                GroupState::Stable | GroupState::PreparingRebalance
            ) {
                group.touch(member_id);
            }
            group.store(offsets)
        };
        if let Err(e) = self.persist(group_id).await {
            // Not written (a full disk): OffsetFetch must not return what a restart would
            // lose, as Kafka keeps a commit pending until its append succeeds.
            if let Some(group) = self.lock().get_mut(group_id) {
                group.unstore(replaced);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Offsets of a committed transaction (TxnOffsetCommit), applied at its commit marker:
    /// no member check, the producer's transaction was checked instead.
    pub async fn commit_transactional(
        &self,
        group_id: &str,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<(), ResponseError> {
        {
            let mut groups = self.lock();
            groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id))
                .store(offsets);
        }
        self.persist(group_id).await
    }

    /// TxnOffsetCommit: the member it names, if any (v3+, KIP-447), must be current, so a
    /// zombie of an older generation cannot commit through its transaction. Without a
    /// member (older versions, or `sendOffsetsToTransaction` with a bare group id) the
    /// producer's transaction alone is checked.
    pub fn check_txn_member(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        let groups = self.lock();
        match groups.get(group_id) {
            // Kafka answers a stale member epoch with ILLEGAL_GENERATION here, the error
            // producers treat as "the group moved on" (abortable, not fatal).
            Some(group) => group
                .check_commit(generation, member_id, instance_id, None)
                .map_err(|e| match e {
                    ResponseError::StaleMemberEpoch => ResponseError::IllegalGeneration,
                    e => e,
                }),
            None if generation < 0 => Ok(()),
            None => Err(ResponseError::IllegalGeneration),
        }
    }

    /// OffsetFetch v9 from a consumer-protocol member names its member epoch; anyone else
    /// (member id null, epoch -1) may read.
    pub fn check_fetch(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        epoch: i32,
    ) -> Result<(), ResponseError> {
        let Some(member_id) = member_id else {
            return Ok(());
        };
        if epoch < 0 && member_id.is_empty() {
            return Ok(());
        }
        let groups = self.lock();
        let Some(group) = groups.get(group_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if group.kind != GroupKind::Consumer {
            return Ok(());
        }
        let m = group
            .consumer
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if epoch == m.epoch {
            Ok(())
        } else {
            Err(ResponseError::StaleMemberEpoch)
        }
    }

    /// Committed offsets of a group.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
    ) -> BTreeMap<String, BTreeMap<i32, CommittedOffset>> {
        self.lock()
            .get(group_id)
            .map(|g| g.offsets.clone())
            .unwrap_or_default()
    }

    /// OffsetDelete: refused per topic while a member subscribes to it; allowed for any
    /// topic of an empty group. Returns each partition's result.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let results = {
            let mut groups = self.lock();
            let group = groups
                .get_mut(group_id)
                .ok_or(ResponseError::GroupIdNotFound)?;
            let subscribed: Option<HashSet<String>> = if group.is_empty() {
                Some(HashSet::new())
            } else if group.kind == GroupKind::Consumer {
                Some(group.consumer.subscribed_topics().into_iter().collect())
            } else {
                group.classic_subscriptions()
            };
            let Some(subscribed) = subscribed else {
                return Err(ResponseError::NonEmptyGroup);
            };
            partitions
                .iter()
                .map(|(topic, p)| {
                    if subscribed.contains(topic) {
                        return Err(ResponseError::GroupSubscribedToTopic);
                    }
                    if let Some(parts) = group.offsets.get_mut(topic) {
                        parts.remove(p);
                        if parts.is_empty() {
                            group.offsets.remove(topic);
                        }
                    }
                    Ok(())
                })
                .collect()
        };
        self.persist(group_id).await?;
        Ok(results)
    }

    /// Kafka's offsets expiry: in an empty group, offsets older than the retention counted
    /// from when the group became empty (or, for groups that never used group management,
    /// from the commit) are dropped, and a group left with nothing is removed.
    pub(super) fn expire_offsets(&self, now: i64) -> Vec<String> {
        let retention = self.settings.offsets_retention.as_millis() as i64;
        let mut touched = Vec::new();
        let mut groups = self.lock();
        groups.retain(|id, g| {
            if !g.is_empty() {
                return true;
            }
            let managed = g.protocol_type.is_some();
            let mut changed = false;
            g.offsets.retain(|_, parts| {
                let before = parts.len();
                parts.retain(|_, c| {
                    let base = if managed {
                        g.empty_since.unwrap_or(now).max(c.commit_timestamp)
                    } else {
                        c.commit_timestamp
                    };
                    now - base < retention
                });
                changed |= parts.len() != before;
                !parts.is_empty()
            });
            if changed {
                tracing::info!(group = %id, "expired committed offsets");
            }
            let keep = !g.offsets.is_empty();
            if changed || !keep {
                touched.push(id.clone());
            }
            keep
        });
        touched
    }
}
