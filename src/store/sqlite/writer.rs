//! The thread that applies inserts to the embedded store, at a lower CPU priority than the threads
//! that answer requests.
//!
//! Applying a few thousand events holds a core for tens of milliseconds. On a small machine that
//! is the core an acknowledgement waits for: single reports at 4 connections had a p99 of ~4 ms
//! with the store applying, ~0.5 ms without. At a lower priority the scheduler lets request
//! threads run first; the store still gets whatever CPU they leave, and if that is too little the
//! spool fills and reports get 429, which is the back-pressure the spool is for.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{channel, Sender};

use super::StoreError;

/// How much lower the writer's priority is (a nice value added to the process's). At +5 the
/// writer gets about a third of a core that a request thread also wants.
const NICER_BY: i32 = 5;

type Job = Box<dyn FnOnce() + Send>;

/// Runs jobs one at a time, in order, on its own thread; the thread ends when this is dropped.
pub(super) struct Writer {
    jobs: Sender<Job>,
}

impl Writer {
    pub(super) fn start() -> Result<Self, StoreError> {
        let (jobs, queue) = channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                lower_this_threads_priority();
                for job in queue {
                    job();
                }
            })
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the SQLite writer thread: {e}"))
            })?;
        Ok(Self { jobs })
    }

    /// Runs `work` on the writer thread and returns what it returned. A panic in `work` is an
    /// error of this call alone: the thread goes on.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "the SQLite writer failed applying an insert".into(),
                ))
            });
            let _ = answer.send(outcome);
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Unavailable("the SQLite writer thread has stopped".into()))?;
        answered.await.map_err(|_| {
            StoreError::Unavailable("the SQLite writer thread stopped before answering".into())
        })?
    }
}

/// Adds [`NICER_BY`] to the calling thread's nice value (on Linux a thread's own); where that is
/// refused, the thread runs at the process's priority, which only costs latency.
pub(super) fn lower_this_threads_priority() {
    let thread = Some(rustix::thread::gettid());
    let lowered = rustix::process::getpriority_process(thread)
        .and_then(|nice| rustix::process::setpriority_process(thread, nice + NICER_BY));
    if let Err(e) = lowered {
        tracing::debug!(error = %e, "could not lower a SQLite thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_at_a_lower_priority_and_a_panic_fails_only_its_own_call() {
        let writer = Writer::start().unwrap();
        let process_nice = rustix::process::getpriority_process(None).unwrap();
        let nice = writer
            .run(|| {
                rustix::process::getpriority_process(Some(rustix::thread::gettid()))
                    .map_err(|e| StoreError::Unavailable(e.to_string()))
            })
            .await
            .unwrap();
        assert_eq!(nice, (process_nice + NICER_BY).min(19));
        let failed = writer.run::<()>(|| panic!("a bug in a query")).await;
        assert!(matches!(failed, Err(StoreError::Unavailable(_))));
        assert_eq!(writer.run(|| Ok(7)).await.unwrap(), 7);
    }
}
