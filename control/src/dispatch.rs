//! Dispatch: picks a dataplane core for each queued call by power-of-two-choices.

/// What the HTTP API needs from the part of the control plane that runs calls.
pub trait CallControl: Send + Sync + 'static {
    /// A call was stored as `queued`: look at the queue now rather than at the next tick.
    fn wake(&self);
    /// Ask a live call (dialing, ringing or in progress) to end as `canceled`.
    /// Returns false when the call is not live in this process.
    fn cancel(&self, id: i64) -> bool;
}
