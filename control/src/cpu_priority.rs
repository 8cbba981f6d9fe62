//! The dataplane comes first: control's threads run at a lower CPU priority than the cores.
//!
//! A core has timers to answer on time (SIP retransmissions, RTP every 20 ms per call); control
//! (HTTP, the store, the call runners' interpreters) has work that can wait a few
//! milliseconds. On a machine where control's threads fill every CPU (a backlog released at
//! once) a core waiting its turn retransmitted INVITEs the callee had already answered. So once
//! the cores run, every other thread of the process can be reniced to `dataplane.control_nice`:
//! under contention the kernel's fair scheduler gives a nice-0 core about ten times the CPU
//! share of a nice-10 thread and lets a waking core preempt control, while an idle machine runs
//! control as fast as before. Threads control starts later inherit the value (Linux threads
//! inherit their creator's nice). Raising a priority needs privileges; lowering one does not,
//! so this works as any user, in any container.
//!
//! On by default (10). `bench/saturation/run.sh` (500 calls with two-way media, then 20,000
//! more calls as fast as control takes them, on the 2-core machine): at 0, 6.4 % of the media
//! packets left more than 2 ms late during the storm; at 10, 1.4 % (0.44 % and 0.15 % without
//! the storm). The price: control also ranks below every other process of the machine, so
//! there the storm's rate fell 21 % (1,478 to 1,165 calls/s) with the load generator and SIPp
//! on the same two CPUs outranking control; set 0 where nothing else runs beside Outdial and
//! setup rate matters more than pacing.
//!
//! The other half is on the cores themselves: `dataplane.realtime_priority` runs them under
//! `SCHED_FIFO` where the process may (`dataplane/src/core/realtime.rs`), above every ordinary
//! thread of the machine, not only control's.

use std::io;

use rustix::process::{Pid, setpriority_process};

/// The name prefix of the dataplane cores' threads (`outdial-core-N`), which keep their nice.
const CORE_THREAD_PREFIX: &str = "outdial-core-";

/// Sets the nice value of every thread of this process except the dataplane cores' to `nice`;
/// returns how many threads it changed. `nice` 0 changes nothing.
pub fn lower_control_threads(nice: i32) -> io::Result<usize> {
    if nice == 0 {
        return Ok(0);
    }
    let mut changed = 0;
    for entry in std::fs::read_dir("/proc/self/task")? {
        let entry = entry?;
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
        else {
            continue;
        };
        // A thread that ended since the listing has no comm: nothing to change.
        let Ok(name) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if name.trim_end().starts_with(CORE_THREAD_PREFIX) {
            continue;
        }
        let Some(pid) = Pid::from_raw(tid) else {
            continue;
        };
        match setpriority_process(Some(pid), nice) {
            Ok(()) => changed += 1,
            // It ended between the listing and now.
            Err(rustix::io::Errno::SRCH) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(changed)
}

/// The nice value of thread `tid` of this process (`/proc/self/task/TID/stat`, field 19).
pub fn thread_nice(tid: i32) -> io::Result<i32> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))?;
    // The name (field 2) may hold spaces; fields after its closing parenthesis do not.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::other("unreadable thread stat"))?;
    after_name
        .split_whitespace()
        .nth(16)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::other("no nice value in the thread stat"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A thread named `name` that reports its id and waits until told to end.
    fn parked(name: &str) -> (i32, mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        let (id_tx, id_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _ = id_tx.send(rustix::thread::gettid().as_raw_nonzero().get());
                let _ = stop_rx.recv();
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let tid = id_rx.recv().unwrap_or_else(|e| panic!("{e}"));
        (tid, stop_tx, handle)
    }

    #[test]
    fn every_thread_but_the_cores_is_lowered() {
        let (core, stop_core, core_thread) = parked("outdial-core-7");
        let (worker, stop_worker, worker_thread) = parked("tokio-rt-worker");
        let before = thread_nice(core).unwrap_or_else(|e| panic!("{e}"));
        let changed = lower_control_threads(before + 5).unwrap_or_else(|e| panic!("{e}"));
        assert!(changed >= 2, "this test's thread and the worker: {changed}");
        assert_eq!(
            thread_nice(core).ok(),
            Some(before),
            "a core keeps its priority"
        );
        assert_eq!(thread_nice(worker).ok(), Some(before + 5));
        // A thread started by a lowered one inherits the value.
        let (child, stop_child, child_thread) = parked("outdial-store");
        assert_eq!(thread_nice(child).ok(), Some(before + 5));
        for stop in [stop_core, stop_worker, stop_child] {
            let _ = stop.send(());
        }
        for thread in [core_thread, worker_thread, child_thread] {
            let _ = thread.join();
        }
        assert_eq!(lower_control_threads(0).ok(), Some(0));
    }
}
