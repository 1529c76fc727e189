//! The bridge's delivery state as a pure type, with no I/O: which partitions this member owns,
//! the batches consumed from them in order, which batches' records the broker has acknowledged,
//! and what has been committed. `kafka.rs` drives it with events (assign, revoke, consumed,
//! acknowledged) and commits what it says; the invariants are property-tested below: a commit
//! never goes backwards, never covers a record not yet acknowledged, and never names a partition
//! this member does not own.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A topic and a partition of it.
pub type Partition = (String, i32);

/// Offsets to commit: per partition, the offset of the next record to consume.
pub type Offsets = BTreeMap<Partition, i64>;

/// A batch, as the ledger knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchId(u64);

#[derive(Debug, Default)]
pub struct Ledger {
    owned: BTreeSet<Partition>,
    /// Consumed batches not yet committed, in consumption order: per partition the offset after
    /// its last record, and whether all its records are acknowledged.
    batches: VecDeque<Batch>,
    next_id: u64,
    /// Per partition ever owned, the offset last handed out to commit.
    committed: Offsets,
    /// The owned partitions that have had a commit handed out since they were assigned.
    committed_while_owned: BTreeSet<Partition>,
}

#[derive(Debug)]
struct Batch {
    id: u64,
    next: Offsets,
    acknowledged: bool,
}

impl Ledger {
    /// Partitions given to this member (all of them, eager; the added ones, cooperative).
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = Partition>) {
        for partition in partitions {
            self.committed_while_owned.remove(&partition);
            self.owned.insert(partition);
        }
    }

    /// Partitions taken away. Returns what to commit for them, synchronously, before they go: the
    /// acknowledged batches at the head of the queue, and else the offset this ownership last
    /// committed, again. The synchronous commit is answered only after every earlier commit of
    /// this member, so none of them can land after the next owner's. Whatever else was consumed
    /// from them is abandoned uncommitted, for their next owner to consume again.
    pub fn revoke(&mut self, partitions: impl IntoIterator<Item = Partition>) -> Offsets {
        let revoked: BTreeSet<Partition> = partitions.into_iter().collect();
        self.ready(|p| revoked.contains(p));
        let last: Offsets = revoked
            .iter()
            .filter(|p| self.owned.contains(*p) && self.committed_while_owned.remove(*p))
            .map(|p| (p.clone(), self.committed[p]))
            .collect();
        // What was committed stays as a floor: should the partition come back, a record fetched
        // before it went (a stale copy) must not move its offset back.
        for partition in &revoked {
            self.owned.remove(partition);
        }
        for batch in &mut self.batches {
            batch.next.retain(|p, _| !revoked.contains(p));
        }
        last
    }

    /// A batch consumed: its records as (partition, offset). Records of partitions this member no
    /// longer owns (fetched before a revoke) are not tracked: they are never committed here.
    pub fn consumed(&mut self, records: impl IntoIterator<Item = (Partition, i64)>) -> BatchId {
        let mut next = Offsets::new();
        for (partition, offset) in records {
            if self.owned.contains(&partition) {
                let entry = next.entry(partition).or_insert(offset + 1);
                *entry = (*entry).max(offset + 1);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.batches.push_back(Batch {
            id,
            next,
            acknowledged: false,
        });
        BatchId(id)
    }

    /// Every record of the batch is acknowledged by the broker.
    pub fn acknowledged(&mut self, batch: BatchId) {
        if let Some(b) = self.batches.iter_mut().find(|b| b.id == batch.0) {
            b.acknowledged = true;
        }
    }

    /// What may be committed now: per owned partition, the offset after the acknowledged batches
    /// at the head of the queue (batches commit in order), where it moves forward.
    pub fn commit_ready(&mut self) -> Offsets {
        self.ready(|_| true)
    }

    /// Everything committable for the owned partitions: for the final, synchronous commit.
    pub fn owned_commits(&self) -> Offsets {
        let mut owned = self.committed.clone();
        owned.retain(|partition, _| self.owned.contains(partition));
        owned
    }

    pub fn owns(&self, partition: &Partition) -> bool {
        self.owned.contains(partition)
    }

    /// Whether a record of this topic and partition belongs to a partition this member owns (a
    /// member owns a handful of partitions: a scan, without building a key).
    pub fn owns_record(&self, topic: &str, partition: i32) -> bool {
        self.owned.iter().any(|(t, p)| *p == partition && t == topic)
    }

    /// How many partitions this member owns.
    pub fn owned(&self) -> usize {
        self.owned.len()
    }

    /// Batches consumed and not yet committed.
    pub fn pending(&self) -> usize {
        self.batches.len()
    }

    /// Pops the acknowledged head of the queue and returns the forward moves of the partitions
    /// `wanted` picks (the others' moves are kept for later).
    fn ready(&mut self, wanted: impl Fn(&Partition) -> bool) -> Offsets {
        let mut ready = Offsets::new();
        let mut kept: VecDeque<Batch> = VecDeque::new();
        while let Some(batch) = self.batches.front() {
            if !batch.acknowledged {
                break;
            }
            let mut batch = self.batches.pop_front().expect("not empty");
            let (mine, others): (Offsets, Offsets) = std::mem::take(&mut batch.next)
                .into_iter()
                .partition(|(p, _)| wanted(p));
            for (partition, next) in mine {
                let entry = ready.entry(partition).or_insert(next);
                *entry = (*entry).max(next);
            }
            if !others.is_empty() {
                batch.next = others;
                kept.push_back(batch);
            }
        }
        // Batches left for the partitions not wanted now go back to the head, still in order.
        while let Some(batch) = kept.pop_back() {
            self.batches.push_front(batch);
        }
        ready.retain(|partition, next| {
            let forward = self.owned.contains(partition) && self.committed.get(partition).is_none_or(|c| *next > *c);
            if forward {
                self.committed.insert(partition.clone(), *next);
                self.committed_while_owned.insert(partition.clone());
            }
            forward
        });
        ready
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    fn p(i: u8) -> Partition {
        ("t".to_owned(), i32::from(i))
    }

    #[test]
    fn batches_commit_in_order_once_acknowledged_and_only_owned_partitions() {
        let mut ledger = Ledger::default();
        ledger.assign([p(0), p(1)]);
        let a = ledger.consumed([(p(0), 0), (p(0), 1), (p(1), 5)]);
        let b = ledger.consumed([(p(0), 2), (p(2), 9)]);
        ledger.acknowledged(b);
        assert!(ledger.commit_ready().is_empty(), "b waits for a");
        ledger.acknowledged(a);
        assert_eq!(ledger.commit_ready(), BTreeMap::from([(p(0), 3), (p(1), 6)]));
        assert!(ledger.commit_ready().is_empty(), "nothing moves twice");
        assert_eq!(ledger.pending(), 0);
    }

    #[test]
    fn a_revoke_commits_the_acknowledged_head_and_abandons_the_rest() {
        let mut ledger = Ledger::default();
        ledger.assign([p(0), p(1)]);
        let a = ledger.consumed([(p(0), 0), (p(1), 0)]);
        let b = ledger.consumed([(p(0), 1), (p(1), 1)]);
        ledger.acknowledged(a);
        assert_eq!(ledger.revoke([p(0)]), BTreeMap::from([(p(0), 1)]));
        assert!(!ledger.owns(&p(0)));
        // p(1)'s part of a is still to commit; b is not acknowledged.
        assert_eq!(ledger.commit_ready(), BTreeMap::from([(p(1), 1)]));
        assert_eq!(ledger.owned_commits(), BTreeMap::from([(p(1), 1)]));
        // Gone: nothing more is committed for p(0), whatever is acknowledged later.
        ledger.acknowledged(b);
        assert_eq!(ledger.commit_ready(), BTreeMap::from([(p(1), 2)]));
    }

    #[test]
    fn a_revoke_commits_again_what_this_ownership_last_committed_and_nothing_from_before() {
        let mut ledger = Ledger::default();
        ledger.assign([p(0), p(1)]);
        let a = ledger.consumed([(p(0), 0), (p(1), 4)]);
        ledger.acknowledged(a);
        // Sent asynchronously; it may still be on its way when the revoke comes.
        assert_eq!(ledger.commit_ready(), BTreeMap::from([(p(0), 1), (p(1), 5)]));
        assert_eq!(ledger.revoke([p(0)]), BTreeMap::from([(p(0), 1)]));
        // Back, and gone again before anything was committed in this ownership: the old offset is
        // not committed again (another member may have committed past it meanwhile).
        ledger.assign([p(0)]);
        assert!(ledger.revoke([p(0)]).is_empty());
        // A partition never committed while owned has nothing to commit again.
        ledger.assign([p(2)]);
        assert!(ledger.revoke([p(2)]).is_empty());
        assert_eq!(ledger.revoke([p(1)]), BTreeMap::from([(p(1), 5)]));
    }

    #[derive(Debug, Clone)]
    enum Event {
        Assign(Vec<u8>),
        Revoke(Vec<u8>),
        /// Records from these partitions, this many each.
        Consume(Vec<(u8, u8)>),
        /// A record from before the partition's committed offset: fetched before a revoke and
        /// delivered after the partition came back.
        Stale(u8),
        /// The n-th batch not yet acknowledged, counted from the oldest.
        Acknowledge(usize),
        Commit,
    }

    fn event() -> impl Strategy<Value = Event> {
        let partitions = prop::collection::vec(0u8..4, 1..4);
        prop_oneof![
            partitions.clone().prop_map(Event::Assign),
            partitions.prop_map(Event::Revoke),
            prop::collection::vec((0u8..4, 1u8..4), 1..4).prop_map(Event::Consume),
            (0u8..4).prop_map(Event::Stale),
            (0usize..4).prop_map(Event::Acknowledge),
            Just(Event::Commit),
        ]
    }

    /// The broker and one member, simulated: the member consumes each owned partition from its
    /// committed offset on, as a consumer does after an assignment.
    #[derive(Default)]
    struct World {
        /// Committed offsets, as the broker keeps them.
        broker: BTreeMap<Partition, i64>,
        owned: BTreeSet<Partition>,
        /// Per partition, the next offset the member will consume.
        position: BTreeMap<Partition, i64>,
        /// Records consumed since the partition was last assigned, with whether they are acknowledged.
        records: BTreeMap<Partition, BTreeMap<i64, bool>>,
        /// Batches not yet acknowledged: their id and records.
        unacknowledged: Vec<(BatchId, Vec<(Partition, i64)>)>,
    }

    impl World {
        fn check_commit(&mut self, offsets: &Offsets, owned: &BTreeSet<Partition>) -> Result<(), TestCaseError> {
            for (partition, &offset) in offsets {
                prop_assert!(owned.contains(partition), "committed {partition:?}, not owned");
                let before = self.broker.get(partition).copied().unwrap_or(0);
                prop_assert!(offset >= before, "{partition:?} went back from {before} to {offset}");
                if let Some(records) = self.records.get(partition) {
                    for (&o, &acknowledged) in records.range(..offset) {
                        prop_assert!(
                            acknowledged,
                            "{partition:?} committed to {offset} over unacknowledged {o}"
                        );
                    }
                }
                self.broker.insert(partition.clone(), offset);
            }
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(6000))]
        #[test]
        fn commits_never_go_back_never_cover_unacknowledged_records_never_name_others(
            events in prop::collection::vec(event(), 1..60)
        ) {
            let mut ledger = Ledger::default();
            let mut world = World::default();
            for event in events {
                match event {
                    Event::Assign(partitions) => {
                        let new: Vec<Partition> =
                            partitions.iter().map(|&i| p(i)).filter(|q| !world.owned.contains(q)).collect();
                        for q in &new {
                            world.owned.insert(q.clone());
                            world.position.insert(q.clone(), world.broker.get(q).copied().unwrap_or(0));
                            world.records.remove(q);
                        }
                        ledger.assign(new);
                    }
                    Event::Revoke(partitions) => {
                        let gone: Vec<Partition> =
                            partitions.iter().map(|&i| p(i)).filter(|q| world.owned.contains(q)).collect();
                        let before = world.owned.clone();
                        let last = ledger.revoke(gone.clone());
                        for q in last.keys() {
                            prop_assert!(gone.contains(q), "a revoke committed {q:?}, which stays");
                        }
                        world.check_commit(&last, &before)?;
                        for q in &gone {
                            world.owned.remove(q);
                        }
                    }
                    Event::Consume(counts) => {
                        let mut records = Vec::new();
                        for (i, n) in counts {
                            let q = p(i);
                            // A partition once owned may still yield what was fetched before its revoke.
                            let Some(position) = world.position.get_mut(&q) else { continue };
                            for _ in 0..n {
                                records.push((q.clone(), *position));
                                if world.owned.contains(&q) {
                                    world.records.entry(q.clone()).or_default().insert(*position, false);
                                }
                                *position += 1;
                            }
                        }
                        let id = ledger.consumed(records.clone());
                        world.unacknowledged.push((id, records));
                    }
                    Event::Stale(i) => {
                        let q = p(i);
                        let committed = world.broker.get(&q).copied().unwrap_or(0);
                        if world.owned.contains(&q) && committed >= 2 {
                            // A second copy of a record already acknowledged and committed.
                            let record = (q, committed - 2);
                            let id = ledger.consumed([record.clone()]);
                            world.unacknowledged.push((id, vec![record]));
                        }
                    }
                    Event::Acknowledge(n) => {
                        if n < world.unacknowledged.len() {
                            let (id, records) = world.unacknowledged.remove(n);
                            for (q, o) in records {
                                if let Some(state) = world.records.get_mut(&q).and_then(|r| r.get_mut(&o)) {
                                    *state = true;
                                }
                            }
                            ledger.acknowledged(id);
                        }
                    }
                    Event::Commit => {
                        let owned = world.owned.clone();
                        let ready = ledger.commit_ready();
                        world.check_commit(&ready, &owned)?;
                    }
                }
                for q in ledger.owned_commits().keys() {
                    prop_assert!(world.owned.contains(q));
                }
            }
        }
    }
}
