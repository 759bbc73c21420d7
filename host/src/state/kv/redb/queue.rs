//! The writer's waiting room: one queue per service, served in turn.
//!
//! Every service shares the one writer thread, so the order in which it
//! takes writes decides whether one service can crowd out another. A single
//! first-come queue lets a service with many writes in flight put all of
//! them ahead of another service's one. Here each service waits in its own
//! queue and a group takes one write of each waiting service in turn, so a
//! service's write waits for at most one write of every other service
//! before it is in a group, however many the others have queued.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::writer::Job;

/// Waiting writes, per service, with the order services take their turns.
#[derive(Default)]
pub(super) struct FairQueue {
    queues: HashMap<Arc<str>, VecDeque<Job>>,
    /// Services with waiting writes, next to be served first. A service is
    /// in it exactly when its queue is not empty.
    turns: VecDeque<Arc<str>>,
}

impl FairQueue {
    /// Queues a write behind the earlier writes of its service.
    pub(super) fn push(&mut self, job: Job) {
        let queue = self.queues.entry(job.service.clone()).or_default();
        if queue.is_empty() {
            self.turns.push_back(job.service.clone());
        }
        queue.push_back(job);
    }

    /// Whether no write waits.
    pub(super) fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }

    /// Takes the next group: one write of each waiting service in turn, at
    /// most `per_service` of each, until `max_jobs` writes or `max_bytes` of
    /// keys and values are taken (at least one write, however large).
    pub(super) fn take_group(
        &mut self,
        max_jobs: usize,
        per_service: usize,
        max_bytes: usize,
    ) -> Vec<Job> {
        let mut group = Vec::new();
        let mut bytes = 0;
        // Services that had their last turn in this group wait for the next.
        let mut done = Vec::new();
        let mut taken: HashMap<Arc<str>, usize> = HashMap::new();
        while group.len() < max_jobs && (group.is_empty() || bytes < max_bytes) {
            let Some(service) = self.turns.pop_front() else {
                break;
            };
            let Some(queue) = self.queues.get_mut(&service) else {
                continue;
            };
            let Some(job) = queue.pop_front() else {
                self.queues.remove(&service);
                continue;
            };
            let count = taken.entry(service.clone()).or_default();
            *count += 1;
            if queue.is_empty() {
                self.queues.remove(&service);
            } else if *count >= per_service {
                done.push(service);
            } else {
                self.turns.push_back(service);
            }
            bytes += job.op.size();
            group.push(job);
        }
        self.turns.extend(done);
        group
    }
}

#[cfg(test)]
mod tests {
    use super::super::writer::WriteOp;
    use super::*;

    fn job(service: &str, key: &str) -> Job {
        let (reply, _) = tokio::sync::oneshot::channel();
        Job {
            service: service.into(),
            quota: crate::state::kv::KvQuota::UNLIMITED,
            op: WriteOp::Delete { key: key.into() },
            reply,
        }
    }

    fn names(group: &[Job]) -> Vec<String> {
        group
            .iter()
            .map(|job| match &job.op {
                WriteOp::Delete { key } => format!("{}/{key}", job.service),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_busy_service_cannot_push_another_out_of_the_next_group() {
        let mut queue = FairQueue::default();
        for n in 0..1000 {
            queue.push(job("busy", &n.to_string()));
        }
        queue.push(job("quiet", "x"));
        // The quiet service's one write is in the first group, second.
        let group = queue.take_group(8, usize::MAX, usize::MAX);
        assert_eq!(
            names(&group),
            ["busy/0", "quiet/x", "busy/1", "busy/2", "busy/3", "busy/4", "busy/5", "busy/6"]
        );
        // Each service keeps its own order.
        let rest = queue.take_group(usize::MAX, usize::MAX, usize::MAX);
        assert_eq!(rest.len(), 1000 - 7);
        assert_eq!(names(&rest[..1]), ["busy/7"]);
        assert!(queue.is_empty());
    }

    #[test]
    fn services_take_turns_one_write_each() {
        let mut queue = FairQueue::default();
        for key in ["1", "2", "3"] {
            queue.push(job("a", key));
        }
        for key in ["1", "2"] {
            queue.push(job("b", key));
        }
        queue.push(job("c", "1"));
        let group = queue.take_group(usize::MAX, usize::MAX, usize::MAX);
        assert_eq!(names(&group), ["a/1", "b/1", "c/1", "a/2", "b/2", "a/3"]);
    }

    #[test]
    fn a_group_takes_at_most_so_many_writes_of_one_service() {
        let mut queue = FairQueue::default();
        for key in ["1", "2", "3", "4", "5"] {
            queue.push(job("busy", key));
        }
        queue.push(job("quiet", "1"));
        queue.push(job("quiet", "2"));
        let group = queue.take_group(usize::MAX, 2, usize::MAX);
        assert_eq!(names(&group), ["busy/1", "quiet/1", "busy/2", "quiet/2"]);
        let group = queue.take_group(usize::MAX, 2, usize::MAX);
        assert_eq!(names(&group), ["busy/3", "busy/4"]);
        let group = queue.take_group(usize::MAX, 2, usize::MAX);
        assert_eq!(names(&group), ["busy/5"]);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_group_stops_at_its_byte_budget_but_takes_at_least_one_write() {
        let mut queue = FairQueue::default();
        let big = |service: &str| {
            let mut job = job(service, "k");
            job.op = WriteOp::Set {
                key: "k".into(),
                value: vec![0; 100],
                expires_at_ms: 0,
            };
            job
        };
        queue.push(big("a"));
        queue.push(big("b"));
        assert_eq!(queue.take_group(usize::MAX, usize::MAX, 10).len(), 1);
        assert_eq!(queue.take_group(usize::MAX, usize::MAX, 1000).len(), 1);
        assert!(queue.take_group(usize::MAX, usize::MAX, 1000).is_empty());
    }
}
