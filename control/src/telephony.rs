//! Telephony nodes: where calls are placed.
//!
//! A [`TelephonyNode`] places calls on its cores and carries their commands and events: the
//! in-process dataplane ([`crate::dispatch::Dispatcher`]) today, a remote telephony server
//! when control and telephony scale out. [`Nodes`] picks a node for each call by
//! power-of-two-choices on reported load (two random nodes, the less loaded wins), and each
//! node picks a core the same way; a node's own release rate (a token bucket) keeps one
//! node from being handed a burst it would retransmit INVITEs over.

use std::sync::{Arc, Mutex};

use outdial_dataplane::api::{CallId, Command};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::runner::CallSignal;
use crate::scheduler::{Micros, TokenBucket};

/// One core's load, as its node reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CoreLoad {
    /// Core index on its node.
    pub core: usize,
    /// Calls placed on it and not finished.
    pub live_calls: usize,
    /// Whether its loop is running.
    pub alive: bool,
}

/// A node's load and capacity (`GET /v1/nodes`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeLoad {
    /// The node's name.
    pub node: String,
    /// `embedded` (in this process) or `remote`.
    pub kind: &'static str,
    /// Calls live on the node.
    pub live_calls: usize,
    /// Calls it takes at once.
    pub capacity: usize,
    /// Per core.
    pub cores: Vec<CoreLoad>,
}

impl NodeLoad {
    /// Fraction of capacity in use; a node with no live core counts as full.
    fn utilisation(&self) -> f64 {
        if self.capacity == 0 || !self.cores.iter().any(|c| c.alive) {
            return f64::INFINITY;
        }
        self.live_calls as f64 / self.capacity as f64
    }
}

/// Where a call was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The call's handle on the node (the dataplane's call id).
    pub call: CallId,
    /// The core it runs on.
    pub core: usize,
}

/// What the call runner needs from a place that carries calls.
pub trait TelephonyNode: Send + Sync + 'static {
    /// The node's name (in CDRs and `/v1/nodes`).
    fn name(&self) -> &str;
    /// Load now.
    fn load(&self) -> NodeLoad;
    /// Takes a new call: picks its core (power-of-two-choices) and routes its events to
    /// `events`. `None` when no core is running.
    fn attach(&self, call_id: &str, events: mpsc::UnboundedSender<CallSignal>)
    -> Option<Placement>;
    /// Sends a command to the call's core; gives it back when the core's queue is full.
    fn send(&self, placement: Placement, command: Command) -> Result<(), Command>;
    /// The call is over: forget it. Detaching twice is harmless.
    fn detach(&self, placement: Placement);
    /// Forgets call `call_id` whose placement was lost (its task failed). Harmless when the
    /// call is not attached.
    fn detach_by_id(&self, call_id: &str);
}

struct Member {
    node: Arc<dyn TelephonyNode>,
    rate: TokenBucket,
}

/// Every telephony node this control node places calls on.
pub struct Nodes {
    members: Mutex<Vec<Member>>,
    rng: Mutex<SmallRng>,
    /// Percent of each node's capacity filled (`policy.max_load_percent`).
    load_percent: usize,
    /// Nodes sampled per pick (`policy.dispatch_choices`).
    choices: usize,
}

impl Nodes {
    /// Nodes with a release rate of `calls_per_second` each (0 = unlimited) and `burst`.
    pub fn new(
        nodes: Vec<Arc<dyn TelephonyNode>>,
        calls_per_second: u32,
        burst: u32,
        seed: u64,
        now: Micros,
    ) -> Self {
        let members = nodes
            .into_iter()
            .map(|node| Member {
                node,
                rate: TokenBucket::new(calls_per_second, burst, now),
            })
            .collect();
        Self {
            members: Mutex::new(members),
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            load_percent: 100,
            choices: 2,
        }
    }

    /// The operator's dispatch policy: fill each node to `load_percent` of its capacity
    /// (10–100), and sample `choices` nodes per call (1 = random, 2 = power of two choices).
    pub fn with_policy(mut self, load_percent: u32, choices: u32) -> Self {
        self.load_percent = usize::try_from(load_percent.clamp(10, 100)).unwrap_or(100);
        self.choices = usize::try_from(choices.max(1)).unwrap_or(2);
        self
    }

    /// Calls `load`'s node may carry under the load policy (at least one if it has capacity).
    fn usable(&self, load: &NodeLoad) -> usize {
        if load.capacity == 0 {
            return 0;
        }
        (load.capacity.saturating_mul(self.load_percent) / 100).max(1)
    }

    /// The node with the lowest utilisation, whatever its rate; `None` only without nodes.
    pub fn least_loaded(&self) -> Option<Arc<dyn TelephonyNode>> {
        self.lock()
            .iter()
            .map(|m| (m.node.load().utilisation(), &m.node))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, node)| Arc::clone(node))
    }

    /// Loads of every node.
    pub fn loads(&self) -> Vec<NodeLoad> {
        self.lock().iter().map(|m| m.node.load()).collect()
    }

    /// How many calls the nodes take now: free capacity, bounded by each node's rate.
    pub fn budget(&self, now: Micros) -> usize {
        self.lock()
            .iter_mut()
            .map(|m| {
                let load = m.node.load();
                let free = if load.cores.iter().any(|c| c.alive) {
                    self.usable(&load).saturating_sub(load.live_calls)
                } else {
                    0
                };
                free.min(m.rate.available(now))
            })
            .fold(0usize, usize::saturating_add)
    }

    /// When a node's rate next allows a call.
    pub fn next_token_at(&self, now: Micros) -> Micros {
        self.lock()
            .iter_mut()
            .map(|m| m.rate.next_token_at(now))
            .min()
            .unwrap_or(now)
    }

    /// Picks a node for one call: `choices` random nodes with a rate token and room under the
    /// load policy (two by default), the least utilised wins. Takes the winner's token.
    /// `None` when no node can take a call now.
    pub fn pick(&self, now: Micros) -> Option<Arc<dyn TelephonyNode>> {
        let mut members = self.lock();
        let mut loads: Vec<(usize, f64)> = members
            .iter_mut()
            .enumerate()
            .filter_map(|(i, m)| {
                let load = m.node.load();
                let utilisation = load.utilisation();
                let room = utilisation < 1.0 && load.live_calls < self.usable(&load);
                let usable = room && m.rate.available(now) > 0;
                usable.then_some((i, utilisation))
            })
            .collect();
        if loads.is_empty() {
            return None;
        }
        // A partial shuffle draws `choices` distinct candidates; the least utilised wins.
        let sample = self.choices.min(loads.len());
        {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            for i in 0..sample {
                let j = rng.random_range(i..loads.len());
                loads.swap(i, j);
            }
        }
        let chosen = loads[..sample]
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|&(i, _)| i)?;
        let member = members.get_mut(chosen)?;
        member.rate.try_take(now);
        Some(Arc::clone(&member.node))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct FakeNode {
        name: String,
        live: AtomicUsize,
        capacity: usize,
        alive: bool,
    }

    impl TelephonyNode for FakeNode {
        fn name(&self) -> &str {
            &self.name
        }
        fn load(&self) -> NodeLoad {
            NodeLoad {
                node: self.name.clone(),
                kind: "remote",
                live_calls: self.live.load(Ordering::Relaxed),
                capacity: self.capacity,
                cores: vec![CoreLoad {
                    core: 0,
                    live_calls: self.live.load(Ordering::Relaxed),
                    alive: self.alive,
                }],
            }
        }
        fn attach(&self, _: &str, _: mpsc::UnboundedSender<CallSignal>) -> Option<Placement> {
            let n = self.live.fetch_add(1, Ordering::Relaxed);
            Some(Placement {
                call: CallId(n as u64),
                core: 0,
            })
        }
        fn send(&self, _: Placement, _: Command) -> Result<(), Command> {
            Ok(())
        }
        fn detach_by_id(&self, _: &str) {}
        fn detach(&self, _: Placement) {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn node(name: &str, capacity: usize, alive: bool) -> Arc<FakeNode> {
        Arc::new(FakeNode {
            name: name.to_owned(),
            live: AtomicUsize::new(0),
            capacity,
            alive,
        })
    }

    #[test]
    fn two_choices_keep_nodes_of_different_sizes_evenly_utilised() {
        let (big, small) = (node("big", 300, true), node("small", 100, true));
        let nodes = Nodes::new(vec![big.clone(), small.clone()], 0, 1, 7, 0);
        for _ in 0..200 {
            let chosen = nodes.pick(0).map(|n| n.name().to_owned());
            let target = if chosen.as_deref() == Some("big") {
                &big
            } else {
                &small
            };
            target.attach("c", mpsc::unbounded_channel().0);
        }
        let (b, s) = (
            big.live.load(Ordering::Relaxed),
            small.live.load(Ordering::Relaxed),
        );
        assert_eq!(b + s, 200);
        // Utilisation within a few calls of equal: 150/300 and 50/100.
        assert!((140..=160).contains(&b), "big {b}, small {s}");
    }

    #[test]
    fn dead_and_full_nodes_are_never_picked() {
        let (dead, full, ok) = (
            node("dead", 10, false),
            node("full", 1, true),
            node("ok", 10, true),
        );
        full.attach("c", mpsc::unbounded_channel().0);
        let nodes = Nodes::new(vec![dead, full, ok], 0, 1, 1, 0);
        for _ in 0..50 {
            assert_eq!(
                nodes.pick(0).map(|n| n.name().to_owned()).as_deref(),
                Some("ok")
            );
        }
        assert_eq!(nodes.budget(0), 10);
    }

    #[test]
    fn a_node_rate_bounds_picks_and_budget() {
        let only = node("n", 1000, true);
        let nodes = Nodes::new(vec![only], 10, 2, 1, 0);
        assert_eq!(nodes.budget(0), 2);
        assert!(nodes.pick(0).is_some() && nodes.pick(0).is_some());
        assert!(nodes.pick(0).is_none(), "burst spent");
        assert_eq!(nodes.next_token_at(0), 100_000);
        assert!(nodes.pick(100_000).is_some());
    }

    #[test]
    fn out_of_tokens_the_least_utilised_live_node_takes_the_call() {
        let (dead, busy, calm) = (
            node("dead", 10, false),
            node("busy", 10, true),
            node("calm", 10, true),
        );
        for _ in 0..5 {
            busy.attach("c", mpsc::unbounded_channel().0);
        }
        calm.attach("c", mpsc::unbounded_channel().0);
        let nodes = Nodes::new(vec![dead, busy, calm], 1, 1, 1, 0);
        while nodes.pick(0).is_some() {}
        let chosen = nodes.least_loaded().map(|n| n.name().to_owned());
        assert_eq!(chosen.as_deref(), Some("calm"));
    }

    #[test]
    fn the_load_policy_leaves_headroom_and_one_choice_is_random() {
        let only = node("n", 100, true);
        let nodes = Nodes::new(vec![only.clone()], 0, 1, 1, 0).with_policy(85, 2);
        assert_eq!(nodes.budget(0), 85);
        for _ in 0..85 {
            assert!(nodes.pick(0).is_some());
            only.attach("c", mpsc::unbounded_channel().0);
        }
        assert!(nodes.pick(0).is_none(), "85 % of 100 are live");
        assert_eq!(nodes.budget(0), 0);

        // One choice ignores load: the busy node still gets about half the calls.
        let (busy, calm) = (node("busy", 1000, true), node("calm", 1000, true));
        for _ in 0..500 {
            busy.attach("c", mpsc::unbounded_channel().0);
        }
        let random = Nodes::new(vec![busy, calm], 0, 1, 3, 0).with_policy(100, 1);
        let to_busy = (0..400)
            .filter(|_| random.pick(0).is_some_and(|n| n.name() == "busy"))
            .count();
        assert!((120..=280).contains(&to_busy), "{to_busy} of 400");
    }
}
