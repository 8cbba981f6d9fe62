//! A core's thread under `SCHED_FIFO`: its timers are answered before any ordinary thread's.
//!
//! Measured (`bench/media/run.sh 20 1750 2000`, one core pinned to CPU 0 beside control, the
//! callee simulator and the load generator on the 2-CPU machine): at normal priority 1.7 % and
//! 6.6 % of the media packets left more than 2 ms after their slot; with the core at
//! `SCHED_FIFO` 10, 0.27 % and 0.97 %. The core sleeps between its 1 ms ticks, so it takes
//! the CPU only for the work it has; the kernel's real-time throttling
//! (`kernel.sched_rt_runtime_us`, 95 % by default) leaves the rest of that CPU to others even
//! if a loop never slept.
//!
//! Written against libc by hand: rustix does not wrap `sched_setscheduler`, and a crate for
//! one system call is not worth its dependency tree.
#![allow(unsafe_code)]

use std::io;

/// Puts the calling thread under `SCHED_FIFO` at `priority` (1–99).
pub(crate) fn raise_current_thread(priority: u8) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    // SAFETY: `param` is a valid `sched_param` for the call's duration; pid 0 is the calling
    // thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The calling thread's scheduling policy and real-time priority.
#[cfg(test)]
pub(crate) fn current_thread_policy() -> (i32, i32) {
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` outlives the call.
    let policy = unsafe { libc::sched_getscheduler(0) };
    // SAFETY: as above.
    unsafe { libc::sched_getparam(0, &mut param) };
    (policy, param.sched_priority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_is_raised_when_allowed_and_left_alone_when_not() {
        let outcome = std::thread::spawn(|| {
            let before = current_thread_policy();
            let raised = raise_current_thread(5).map_err(|e| e.raw_os_error());
            (before, raised, current_thread_policy())
        })
        .join();
        let Ok((before, raised, after)) = outcome else {
            panic!("the thread panicked");
        };
        assert_eq!(before, (libc::SCHED_OTHER, 0));
        match raised {
            Ok(()) => assert_eq!(after, (libc::SCHED_FIFO, 5)),
            // Not root and no RLIMIT_RTPRIO: refused, and nothing changed.
            Err(code) => {
                assert_eq!(code, Some(libc::EPERM));
                assert_eq!(after, before);
            }
        }
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(after, (libc::SCHED_FIFO, 5), "root may always raise");
        }
        // This thread was not touched.
        assert_eq!(current_thread_policy(), (libc::SCHED_OTHER, 0));
    }
}
