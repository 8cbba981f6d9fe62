//! Where a call's VoiceXML interpreter runs, and how a cancel reaches it while it runs.
//!
//! The session is sans-IO and synchronous: feeding it an input runs the interpreter until it
//! next waits for the platform. That is microseconds for a real application, but a hostile one
//! can make it long: each script may use its own budget (200 interrupt checks, about 0.2 s of
//! CPU), a `<catch>` may start it again, and only the call's budget
//! ([`outdial_vxml::Limits::call_script_budget`], `vxml.call_script_budget`) ends that.
//! Run on a tokio worker, that work would hold the worker: two such calls on a 2-core machine
//! left the API and every other call without a worker.
//!
//! So every step of a session that may run a script runs through [`off_runtime`] (starting a
//! session does not, nor does dropping one whose script context never started): on the
//! multi-threaded runtime it is
//! [`tokio::task::block_in_place`], which hands this worker's queue and its place in the
//! runtime to another thread before the work starts. The API and the other calls keep as many
//! workers as the runtime was built with, whatever the interpreters do; a long step only
//! occupies a thread the kernel preempts and shares fairly with everything else. Why not a pool
//! of our own: the session is a `&mut` inside the call's task, so a pool would mean moving it
//! out and back on every input and turning the runner's synchronous event handling into
//! `async`; `block_in_place` gives the same isolation (the work is off the runtime's workers)
//! with the session where it is. Why not steps that yield: QuickJS cannot suspend a running
//! script, so a yield could only come between scripts, 0.2 s apart.
//!
//! While a step runs, the call's task cannot read its signals, so a `DELETE` would wait for the
//! step. [`relay`] puts a small task between the dispatcher and the call's task: a cancel
//! passing through it stops the session's [`Meter`] at once (the running script ends at the
//! engine's next interrupt check, about 10,000 operations later, and the session at its next
//! step), and then goes on to the call's task like every other signal, in order.

use std::sync::{Arc, OnceLock};

use outdial_vxml::script::Meter;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::mpsc;

use super::CallSignal;

/// Runs `work` (one step of a call's session) off the async runtime's workers when the
/// runtime has others to hand them to; on a current-thread runtime (tests) it runs in place.
pub(super) fn off_runtime<R>(work: impl FnOnce() -> R) -> R {
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// The meter of a call's session, once it has one.
pub(super) type SessionMeter = Arc<OnceLock<Meter>>;

/// A sender for a call's signals that forwards them, in order, to `task` (the call task's own
/// channel), stopping the session's scripts first when the signal is a cancel. The relay ends
/// when every sender is dropped or the call's task is gone.
pub(super) fn relay(
    task: mpsc::UnboundedSender<CallSignal>,
) -> (mpsc::UnboundedSender<CallSignal>, SessionMeter) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let meter: SessionMeter = Arc::new(OnceLock::new());
    let stop = Arc::clone(&meter);
    tokio::spawn(async move {
        while let Some(signal) = rx.recv().await {
            if let CallSignal::Cancel(_) = signal
                && let Some(meter) = stop.get()
            {
                meter.stop();
            }
            if task.send(signal).is_err() {
                break;
            }
        }
    });
    (tx, meter)
}

/// Whether the session was stopped by a cancel (its end is then the cancel's, not an error).
pub(super) fn stopped(meter: &SessionMeter) -> bool {
    meter.get().is_some_and(Meter::stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancel_through_the_relay_stops_the_meter_and_arrives_in_order() {
        let (task_tx, mut task_rx) = mpsc::unbounded_channel();
        let (tx, meter) = relay(task_tx);
        let session_meter = Meter::unlimited();
        assert!(meter.set(session_meter.clone()).is_ok());
        tx.send(CallSignal::PromptSkipped(7)).expect("relay alive");
        tx.send(CallSignal::Cancel("canceled by API request"))
            .expect("relay alive");
        assert!(matches!(
            task_rx.recv().await,
            Some(CallSignal::PromptSkipped(7))
        ));
        assert!(matches!(
            task_rx.recv().await,
            Some(CallSignal::Cancel("canceled by API request"))
        ));
        assert!(session_meter.stopped(), "the cancel stopped the session");
        assert!(stopped(&meter));
        drop(tx);
        assert!(
            task_rx.recv().await.is_none(),
            "the relay ends with its senders"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn long_work_leaves_the_runtime_its_worker() {
        // One worker: if the work held it, the spawned task could not run until the work ended,
        // and the work (which waits for it) would never end.
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = tokio::spawn(async move { tx.send(()).is_ok() });
        let got = off_runtime(move || rx.recv_timeout(std::time::Duration::from_secs(30)).is_ok());
        assert!(got, "the other task ran while the work blocked");
        assert!(waiter.await.unwrap_or(false));
    }
}
