//! Where expensive evaluations run: a few dedicated threads, shared fairly between tenants.
//!
//! Expressions that can cost more than their input's size (loops, `replace`, `matches`...) are
//! evaluated here rather than on an actor's async worker thread, so a tenant's heavy rule or
//! filter can never hold up the runtime that serves everyone else's requests and deliveries.
//! Jobs queue per tenant (organization) and the threads take them round-robin across tenants,
//! so one tenant's backlog delays only its own evaluations. Each job is already bounded by the
//! evaluation budget; a panicking job fails alone.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::oneshot;

use super::expression::panic_message;

type Job = Box<dyn FnOnce() + Send>;

/// A fair pool of evaluation threads; cheap to clone.
#[derive(Clone)]
pub struct EvalPool {
    shared: Arc<Shared>,
}

struct Shared {
    queues: Mutex<Queues>,
    ready: Condvar,
}

#[derive(Default)]
struct Queues {
    /// Pending jobs per tenant.
    jobs: HashMap<u64, VecDeque<Job>>,
    /// Tenants with pending jobs, in the order they are served.
    turn: VecDeque<u64>,
    closed: bool,
}

impl Queues {
    /// The next job, taking turns between tenants.
    fn next(&mut self) -> Option<Job> {
        let tenant = self.turn.pop_front()?;
        let queue = self.jobs.get_mut(&tenant)?;
        let job = queue.pop_front();
        if queue.is_empty() {
            self.jobs.remove(&tenant);
        } else {
            self.turn.push_back(tenant);
        }
        job
    }
}

/// Why a job gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The job panicked.
    #[error("evaluation panicked: {0}")]
    Panicked(String),
    /// The pool was shut down before the job ran.
    #[error("the evaluation pool is shut down")]
    Closed,
}

/// Stack of an evaluation thread: the limits keep evaluation far shallower, this is headroom.
const STACK_BYTES: usize = 8 * 1024 * 1024;

impl EvalPool {
    /// Starts `threads` evaluation threads (at least one).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues::default()),
            ready: Condvar::new(),
        });
        for i in 0..threads.max(1) {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("hookforge-eval-{i}"))
                .stack_size(STACK_BYTES)
                .spawn(move || shared.work())?;
        }
        Ok(Self { shared })
    }

    /// Runs `job` on a pool thread in `tenant`'s turn and returns its result.
    pub async fn run<T, F>(&self, tenant: u64, job: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let boxed: Job = Box::new(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                .map_err(|panic| PoolError::Panicked(panic_message(&*panic)));
            let _ = tx.send(result);
        });
        {
            let mut queues = self.shared.queues.lock().expect("pool lock poisoned");
            if queues.closed {
                return Err(PoolError::Closed);
            }
            let queue = queues.jobs.entry(tenant).or_default();
            if queue.is_empty() {
                queues.turn.push_back(tenant);
            }
            queues
                .jobs
                .get_mut(&tenant)
                .expect("just inserted")
                .push_back(boxed);
        }
        self.shared.ready.notify_one();
        rx.await.unwrap_or(Err(PoolError::Closed))
    }

    /// Stops the threads once the queued jobs are done; later jobs get [`PoolError::Closed`].
    pub fn close(&self) {
        self.shared
            .queues
            .lock()
            .expect("pool lock poisoned")
            .closed = true;
        self.shared.ready.notify_all();
    }
}

impl Shared {
    fn work(&self) {
        loop {
            let job = {
                let mut queues = self.queues.lock().expect("pool lock poisoned");
                loop {
                    if let Some(job) = queues.next() {
                        break job;
                    }
                    if queues.closed {
                        return;
                    }
                    queues = self.ready.wait(queues).expect("pool lock poisoned");
                }
            };
            job();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn jobs_return_their_results_and_panics_stay_in_the_job() {
        let pool = EvalPool::new(1).unwrap();
        assert_eq!(pool.run(1, || 6 * 7).await, Ok(42));
        let panicked = pool.run(1, || -> u32 { panic!("boom") }).await;
        assert_eq!(panicked, Err(PoolError::Panicked("boom".into())));
        assert_eq!(pool.run(2, || "still serving").await, Ok("still serving"));
        pool.close();
        assert_eq!(pool.run(1, || 1).await, Err(PoolError::Closed));
    }

    #[tokio::test]
    async fn a_tenants_backlog_does_not_delay_another_tenant() {
        let pool = EvalPool::new(1).unwrap();
        let slow = |_: u32| std::thread::sleep(Duration::from_millis(20));
        // Tenant 1 queues 20 jobs of 20 ms (400 ms of work), then tenant 2 asks for one.
        let backlog: Vec<_> = (0..20)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.run(1, move || slow(i)).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let started = Instant::now();
        pool.run(2, || ()).await.unwrap();
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_millis(120),
            "tenant 2 waited {waited:?} behind tenant 1's backlog"
        );
        for job in backlog {
            job.await.unwrap().unwrap();
        }
    }
}
