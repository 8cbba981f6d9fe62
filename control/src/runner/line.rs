//! A call's line to the telephony node that carries it.

use std::sync::Arc;

use outdial_dataplane::api::Command;
use tokio::sync::mpsc;

use super::CallSignal;
use crate::telephony::{Placement, TelephonyNode};

/// The node a call runs on and its place there; cheap to clone (the player and the hangup
/// retry hold one too).
#[derive(Clone)]
pub(super) struct Line {
    node: Arc<dyn TelephonyNode>,
    pub(super) placement: Placement,
}

impl Line {
    /// Attaches call `public_id` to `node`, its events going to `events`; `None` when the
    /// node has no core running.
    pub(super) fn attach(
        node: Arc<dyn TelephonyNode>,
        public_id: &str,
        events: mpsc::UnboundedSender<CallSignal>,
    ) -> Option<Self> {
        let placement = node.attach(public_id, events)?;
        Some(Self { node, placement })
    }

    /// A new line on the same node for call `public_id` (a new dataplane call: the next
    /// address of a failover); `None` when the node has no core running.
    pub(super) fn reattach(
        &self,
        public_id: &str,
        events: mpsc::UnboundedSender<CallSignal>,
    ) -> Option<Self> {
        Self::attach(Arc::clone(&self.node), public_id, events)
    }

    /// The line of a call the dispatcher adopted already (an incoming call).
    pub(super) fn adopt(node: Arc<dyn TelephonyNode>, placement: Placement) -> Self {
        Self { node, placement }
    }

    /// Sends a command to the call's core; gives it back when the core's queue is full.
    pub(super) fn send(&self, command: Command) -> Result<(), Command> {
        self.node.send(self.placement, command)
    }

    /// The call is over on this node.
    pub(super) fn detach(&self) {
        self.node.detach(self.placement);
    }
}
