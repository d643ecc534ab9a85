//! One slot per inference worker (at least two when splitting is on: the helper thread is the
//! second). Set `workers` to at most the core count, as the default does. A text alone in the server runs on two threads (two slots); any
//! other run takes one. A worker that finds no free slot waits for one instead of running beside a
//! split run: three busy threads on two cores slow every run they share a core with, and a split
//! run, whose halves wait for each other after every stage, worst of all (at half of peak, p99 went
//! from 17 to 41 ms before runs took slots). A split run learns that a worker waits (`waiting`) and
//! gives one of its two slots back (`Held::give_one_back`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

pub struct CpuSlots {
    free: Mutex<usize>,
    freed: Condvar,
    /// Workers waiting in `one`.
    waiting: AtomicUsize,
}

/// Slots held until dropped.
pub struct Held<'a> {
    slots: &'a CpuSlots,
    count: AtomicUsize,
}

impl Held<'_> {
    /// A worker waits for a slot.
    pub fn wanted(&self) -> bool {
        self.slots.waiting.load(Ordering::Relaxed) > 0
    }

    /// Give one of two held slots back now (a split run's helper has stopped).
    pub fn give_one_back(&self) {
        if self
            .count
            .compare_exchange(2, 1, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.slots.release(1);
        }
    }
}

impl CpuSlots {
    pub fn new(count: usize) -> CpuSlots {
        CpuSlots {
            free: Mutex::new(count.max(1)),
            freed: Condvar::new(),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Two slots if both are free now; never waits.
    pub fn try_two(&self) -> Option<Held<'_>> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        (*free >= 2).then(|| {
            *free -= 2;
            Held {
                slots: self,
                count: AtomicUsize::new(2),
            }
        })
    }

    /// One slot, waiting while a split run holds them.
    pub fn one(&self) -> Held<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if *free == 0 {
            self.waiting.fetch_add(1, Ordering::Relaxed);
            while *free == 0 {
                free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
            }
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        *free -= 1;
        Held {
            slots: self,
            count: AtomicUsize::new(1),
        }
    }

    fn release(&self, count: usize) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        *free += count;
        self.freed.notify_all();
    }
}

/// A split run on two held slots gives one back when a worker waits for it.
impl crate::model::GiveWay for Held<'_> {
    fn asked(&self) -> bool {
        self.wanted()
    }
    fn helper_left(&self) {
        self.give_one_back();
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.slots.release(self.count.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_run_takes_both_slots_and_a_single_run_waits_for_one() {
        let slots = std::sync::Arc::new(CpuSlots::new(2));
        let one = slots.one();
        assert!(slots.try_two().is_none(), "one slot is taken");
        drop(one);
        let two = slots.try_two().expect("both free");
        let waiter = {
            let slots = slots.clone();
            std::thread::spawn(move || {
                let _held = slots.one();
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "waits while the split run holds both"
        );
        drop(two);
        waiter.join().unwrap();
        assert!(slots.try_two().is_some(), "all slots back");
    }

    #[test]
    fn a_split_run_gives_one_slot_back_to_a_waiting_worker() {
        let slots = std::sync::Arc::new(CpuSlots::new(2));
        let two = slots.try_two().expect("both free");
        assert!(!two.wanted());
        let waiter = {
            let slots = slots.clone();
            std::thread::spawn(move || drop(slots.one()))
        };
        while !two.wanted() {
            std::thread::yield_now();
        }
        two.give_one_back();
        waiter.join().unwrap();
        two.give_one_back(); // once only
        assert!(slots.try_two().is_none(), "the split run still holds one");
        drop(two);
        assert!(slots.try_two().is_some(), "all slots back");
    }
}
