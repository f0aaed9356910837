//! A small crew of threads that stay awake between parallel regions, for the decode step's
//! kernels.
//!
//! A decode step at batch 1 of SmolLM2-135M is a chain of about 150 short parallel regions
//! (each projection reads its weights once: 0.2 ms on average) separated by 15 µs on average of
//! serial work (norms, RoPE, the cache write).
//! rayon's idle workers yield for a few tens of microseconds and then sleep on a futex, so most
//! of those regions started by waking a sleeping thread: about 190 context switches per token,
//! the woken worker arriving late, the caller reading most of the weights alone, and about a
//! tenth of the two cores idle. The crew's workers instead spin on an atomic counter for a while
//! after each region, as llama.cpp's thread pool does, so the next region finds them running.
//!
//! - One job at a time: [`run`] publishes a job (a task count and a closure), runs tasks itself
//!   alongside the workers (each task is claimed once, from a shared counter, so a late worker
//!   costs nothing but its share), and returns when every task is done.
//! - A caller that finds the crew busy (another thread decoding, or a task of a crew job that
//!   starts a parallel region of its own) runs its tasks on rayon instead: never a deadlock,
//!   never two jobs on one crew.
//! - Workers spin with `pause` for [`SPIN_PAUSE`], then yield the core for up to [`SPIN_YIELD`]
//!   (so other threads that want it get it), then park until the next job. A burst of decode
//!   steps keeps them spinning; anything else (prompt processing and training run on rayon) finds
//!   them parked within milliseconds.
//! - The crew has `rayon::current_num_threads() - 1` workers: the calling thread is the last
//!   member, and the rayon pool it runs in sleeps while the crew works, so the crew fills the
//!   cores rayon would.
//! - A task that panics does not take a worker down: the panic is caught, the job finishes, and
//!   it resumes on the caller.

#![allow(unsafe_code)] // a job borrows the caller's closure across threads; each block says why it is sound

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use rayon::prelude::*;

/// How long an idle worker spins with `pause` before it starts yielding its core.
pub const SPIN_PAUSE: Duration = Duration::from_micros(50);
/// How long an idle worker keeps polling (yielding its core between polls) before it parks.
pub const SPIN_YIELD: Duration = Duration::from_millis(2);

/// One parallel region: `tasks` calls of `f`, claimed through `next`.
struct Job {
    /// The caller's closure, its lifetime erased: it outlives the job (see [`run`]).
    f: *const (dyn Fn(usize) + Sync),
    tasks: usize,
    next: AtomicUsize,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Job {
    /// Claims and runs tasks until none are left.
    fn help(&self) {
        loop {
            let task = self.next.fetch_add(1, SeqCst);
            if task >= self.tasks {
                return;
            }
            // SAFETY: `f` points at the closure `run` borrowed, which lives until `run` returns;
            // `run` returns only after every thread that may hold this job has left it
            // (`Crew::busy` is zero with the job unpublished).
            let f = unsafe { &*self.f };
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(task))) {
                let mut slot = self.panic.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(payload);
            }
        }
    }
}

struct Worker {
    /// Set once the thread has started.
    thread: OnceLock<Thread>,
    parked: AtomicBool,
}

struct Crew {
    /// The job being run, or null.
    job: AtomicPtr<Job>,
    /// Counts published jobs, so a worker sees a new one even when its address repeats.
    generation: AtomicUsize,
    /// Workers inside a job (from just before they read `job` until they leave it).
    busy: AtomicUsize,
    /// Whether a caller holds the crew.
    held: AtomicBool,
    workers: Vec<Worker>,
}

/// The process's crew, started on first use; `None` with one thread (nothing to share).
fn crew() -> Option<&'static Crew> {
    static CREW: OnceLock<Option<&'static Crew>> = OnceLock::new();
    *CREW.get_or_init(|| {
        let size = rayon::current_num_threads().saturating_sub(1);
        if size == 0 {
            return None;
        }
        let crew: &'static Crew = Box::leak(Box::new(Crew {
            job: AtomicPtr::new(std::ptr::null_mut()),
            generation: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            held: AtomicBool::new(false),
            workers: (0..size)
                .map(|_| Worker {
                    thread: OnceLock::new(),
                    parked: AtomicBool::new(false),
                })
                .collect(),
        }));
        for (index, worker) in crew.workers.iter().enumerate() {
            let spawned = std::thread::Builder::new()
                .name(format!("studio-crew-{index}"))
                .spawn(move || work(crew, index));
            match spawned {
                Ok(handle) => {
                    let _ = worker.thread.set(handle.thread().clone());
                }
                // The job's caller runs the tasks a missing worker would have claimed.
                Err(e) => tracing::warn!("decode crew: worker {index} did not start ({e})"),
            }
        }
        Some(crew)
    })
}

/// A worker's life: wait for a job, help with it, repeat.
fn work(crew: &'static Crew, index: usize) {
    let me = &crew.workers[index];
    let mut seen = crew.generation.load(SeqCst);
    loop {
        let idle_since = Instant::now();
        let mut polls = 0u32;
        loop {
            let now = crew.generation.load(SeqCst);
            if now != seen {
                seen = now;
                break;
            }
            polls = polls.wrapping_add(1);
            if !polls.is_multiple_of(64) {
                std::hint::spin_loop();
                continue;
            }
            let idle = idle_since.elapsed();
            if idle < SPIN_PAUSE {
                std::hint::spin_loop();
            } else if idle < SPIN_YIELD {
                std::thread::yield_now();
            } else {
                // Announce the nap, then look once more: a caller either sees `parked` and
                // unparks, or published before this second look (both orders are SeqCst).
                me.parked.store(true, SeqCst);
                while crew.generation.load(SeqCst) == seen {
                    std::thread::park();
                }
                me.parked.store(false, SeqCst);
            }
        }
        crew.busy.fetch_add(1, SeqCst);
        let job = crew.job.load(SeqCst);
        if !job.is_null() {
            // SAFETY: a non-null `job` read after raising `busy` stays valid until `busy` falls:
            // its caller unpublishes it, then waits for `busy` to reach zero before returning.
            unsafe { (*job).help() };
        }
        crew.busy.fetch_sub(1, SeqCst);
    }
}

/// Runs `f(0)`, …, `f(tasks − 1)` in parallel, each once, on the crew and the calling thread
/// (on rayon when the crew is busy or absent), and returns when all have run. A task's panic
/// resumes here once every task has finished.
pub fn run(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    match tasks {
        0 => return,
        1 => return f(0),
        _ => {}
    }
    let Some(crew) = crew() else {
        return (0..tasks).into_par_iter().for_each(f);
    };
    if crew
        .held
        .compare_exchange(false, true, SeqCst, SeqCst)
        .is_err()
    {
        return (0..tasks).into_par_iter().for_each(f);
    }
    // SAFETY: only the lifetime is erased; `Release` below keeps `f` borrowed until no worker
    // can reach the job.
    let f: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(f) };
    let job = Job {
        f,
        tasks,
        next: AtomicUsize::new(0),
        panic: Mutex::new(None),
    };
    /// Unpublishes the job and waits for the workers inside it, also if the caller unwinds.
    struct Release<'c>(&'c Crew);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            self.0.job.store(std::ptr::null_mut(), SeqCst);
            let mut spins = 0u32;
            while self.0.busy.load(SeqCst) != 0 {
                // A worker preempted inside its last task needs a core back to finish it.
                spins = spins.saturating_add(1);
                if spins < 4096 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            self.0.held.store(false, SeqCst);
        }
    }
    let release = Release(crew);
    crew.job.store(std::ptr::from_ref(&job).cast_mut(), SeqCst);
    crew.generation.fetch_add(1, SeqCst);
    for worker in &crew.workers {
        if let (true, Some(thread)) = (worker.parked.load(SeqCst), worker.thread.get()) {
            thread.unpark();
        }
    }
    job.help();
    drop(release);
    let panic = job.panic.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(payload) = panic {
        resume_unwind(payload);
    }
}

/// [`run`] collecting each task's result, in task order.
pub fn map<T: Send>(tasks: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let slots: Vec<Mutex<Option<T>>> = (0..tasks).map(|_| Mutex::new(None)).collect();
    run(tasks, &|t| {
        let value = f(t);
        *slots[t].lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
    });
    slots
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("crew::run ran every task once, or resumed its panic")
        })
        .collect()
}

/// [`run`] over the chunks of `data` (`chunk` elements each, the last one shorter): `f(index,
/// chunk)`, each chunk on one thread.
pub fn for_each_chunk_mut<T: Send>(
    data: &mut [T],
    chunk: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    assert!(chunk > 0, "crew::for_each_chunk_mut: chunk of 0 elements");
    let len = data.len();
    let base = Shared(data.as_mut_ptr());
    run(len.div_ceil(chunk), &|t| {
        let start = t * chunk;
        let end = (start + chunk).min(len);
        // SAFETY: `run` calls each task index once, so the ranges `start..end` handed out are
        // disjoint and inside `data`, which stays mutably borrowed until `run` returns.
        let part = unsafe { std::slice::from_raw_parts_mut(base.at(start), end - start) };
        f(t, part);
    });
}

/// A pointer into a slice that tasks write disjoint ranges of.
struct Shared<T>(*mut T);

impl<T> Shared<T> {
    fn at(&self, offset: usize) -> *mut T {
        // SAFETY: callers pass offsets inside the slice the pointer came from.
        unsafe { self.0.add(offset) }
    }
}

// SAFETY: tasks only write disjoint ranges (see `for_each_chunk_mut`), so sharing the pointer
// is sharing `&mut [T]` pieces, which is sound for `T: Send`.
unsafe impl<T: Send> Sync for Shared<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_task_runs_once() {
        for tasks in [0, 1, 2, 3, 17, 1000] {
            let hits: Vec<AtomicU64> = (0..tasks).map(|_| AtomicU64::new(0)).collect();
            run(tasks, &|t| {
                hits[t].fetch_add(1, SeqCst);
            });
            assert!(hits.iter().all(|h| h.load(SeqCst) == 1), "{tasks} tasks");
        }
    }

    #[test]
    fn map_keeps_task_order_and_chunks_cover_the_slice() {
        let squares = map(100, |t| t * t);
        assert_eq!(squares, (0..100).map(|t| t * t).collect::<Vec<_>>());
        let mut data = vec![0usize; 1001];
        for_each_chunk_mut(&mut data, 64, |t, part| {
            for (i, x) in part.iter_mut().enumerate() {
                *x = t * 64 + i;
            }
        });
        assert_eq!(data, (0..1001).collect::<Vec<_>>());
    }

    #[test]
    fn nested_and_concurrent_callers_fall_back_to_rayon() {
        // A task that starts a region of its own, and several threads using the crew at once.
        let total = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        run(8, &|_| {
                            run(4, &|_| {
                                total.fetch_add(1, SeqCst);
                            });
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(SeqCst), 4 * 50 * 8 * 4);
    }

    #[test]
    fn a_panicking_task_resumes_on_the_caller_and_the_crew_keeps_working() {
        let caught = catch_unwind(|| {
            run(16, &|t| {
                if t == 11 {
                    panic!("task 11");
                }
            })
        });
        let payload = caught.expect_err("the panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"task 11"));
        assert_eq!(
            map(16, |t| t + 1).iter().sum::<usize>(),
            (1..=16).sum::<usize>()
        );
    }

    #[test]
    fn parked_workers_wake_for_the_next_job() {
        assert_eq!(map(8, |t| t).len(), 8);
        std::thread::sleep(SPIN_YIELD * 3);
        let ran: Vec<std::thread::ThreadId> = map(64, |_| {
            std::thread::sleep(Duration::from_millis(1));
            std::thread::current().id()
        });
        assert_eq!(ran.len(), 64);
    }
}
