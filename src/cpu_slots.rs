//! One slot per inference worker (at least two when splitting is on: the helper thread is the
//! second). Set `workers` to at most the core count, as the default does. A text alone in the server runs on two threads (two slots); any
//! other run takes one. A worker that finds no free slot waits for one instead of running beside a
//! split run: three busy threads on two cores slow every run they share a core with, and a split
//! run, whose halves wait for each other after every stage, worst of all (at half of peak, p99 went
//! from 17 to 41 ms before runs took slots).

use std::sync::{Condvar, Mutex};

pub struct CpuSlots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// Slots held until dropped.
pub struct Held<'a> {
    slots: &'a CpuSlots,
    count: usize,
}

impl CpuSlots {
    pub fn new(count: usize) -> CpuSlots {
        CpuSlots {
            free: Mutex::new(count.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Two slots if both are free now; never waits.
    pub fn try_two(&self) -> Option<Held<'_>> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        (*free >= 2).then(|| {
            *free -= 2;
            Held {
                slots: self,
                count: 2,
            }
        })
    }

    /// One slot, waiting while a split run holds them.
    pub fn one(&self) -> Held<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Held {
            slots: self,
            count: 1,
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut free = self.slots.free.lock().unwrap_or_else(|e| e.into_inner());
        *free += self.count;
        self.slots.freed.notify_all();
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
}
