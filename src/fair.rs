//! Fair turns across namespaces: a bounded number of tasks may run at once, and the turns are
//! handed out round-robin between the namespaces that wait, so that a grant never waits behind
//! a backlog another namespace filled (a thousand grants created at once, or coming back
//! together for their issuer's next attempt).
//!
//! Used twice: for reconciles (`--concurrency`; the controller's own queue is first-in,
//! first-out across namespaces, so it lets every due reconcile start and each waits here for
//! its turn, as a small future whose work is boxed only once it has a turn), and for the
//! background status and Event writes (`cluster::writer`), whose backlog after a thousand new
//! grants would otherwise hold up another namespace's `Ready`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// The gate; one per operator process.
pub struct FairGate {
    inner: Mutex<Inner>,
}

struct Inner {
    free: usize,
    /// Per namespace, its reconciles waiting for a turn, in order.
    waiting: HashMap<String, VecDeque<oneshot::Sender<Turn>>>,
    /// The namespaces with waiting reconciles, in the order they get their next turn.
    rotation: VecDeque<String>,
}

/// A turn: held while a reconcile runs, handed on when dropped.
pub struct Turn {
    gate: Option<Arc<FairGate>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.hand_on();
        }
    }
}

impl FairGate {
    pub fn new(turns: usize) -> Arc<Self> {
        Arc::new(FairGate {
            inner: Mutex::new(Inner {
                free: turns.max(1),
                waiting: HashMap::new(),
                rotation: VecDeque::new(),
            }),
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a turn of `namespace`.
    pub async fn enter(self: &Arc<Self>, namespace: &str) -> Turn {
        let waiting = {
            let mut inner = self.inner();
            if inner.free > 0 && inner.rotation.is_empty() {
                inner.free -= 1;
                return Turn {
                    gate: Some(self.clone()),
                };
            }
            let (sender, receiver) = oneshot::channel();
            let queue = inner.waiting.entry(namespace.to_string()).or_default();
            queue.push_back(sender);
            if queue.len() == 1 {
                inner.rotation.push_back(namespace.to_string());
            }
            receiver
        };
        match waiting.await {
            Ok(turn) => turn,
            // The gate dropped the sender only when the process ends.
            Err(_) => Turn { gate: None },
        }
    }

    /// A turn ended: the next namespace in the rotation gets it, else it is free.
    fn hand_on(self: &Arc<Self>) {
        let mut inner = self.inner();
        while let Some(namespace) = inner.rotation.pop_front() {
            let Some(queue) = inner.waiting.get_mut(&namespace) else {
                continue;
            };
            let next = queue.pop_front();
            let more = !queue.is_empty();
            if more {
                inner.rotation.push_back(namespace.clone());
            } else {
                inner.waiting.remove(&namespace);
            }
            if let Some(sender) = next {
                let turn = Turn {
                    gate: Some(self.clone()),
                };
                // A waiter that gave up (its reconcile was dropped) returns the turn, which
                // comes back here through its drop: without the lock held, so give it after.
                drop(inner);
                if let Err(mut unwanted) = sender.send(turn) {
                    // Not handed on twice: the returned turn's drop does it.
                    drop(unwanted.gate.take());
                    self.hand_on();
                }
                return;
            }
        }
        inner.free += 1;
    }

    /// Turns not in use (tests).
    #[cfg(test)]
    fn free(&self) -> usize {
        self.inner().free
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn turns_alternate_between_namespaces_whatever_their_backlog() {
        let gate = FairGate::new(1);
        let first = gate.enter("crowded").await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        // A thousand reconciles of one namespace queue up before one of another.
        for index in 0..1000 {
            let (gate, order) = (gate.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _turn = gate.enter("crowded").await;
                order.lock().unwrap().push(format!("crowded-{index}"));
            }));
            tokio::task::yield_now().await;
        }
        let (victim_gate, victim_order) = (gate.clone(), order.clone());
        let victim = tokio::spawn(async move {
            let _turn = victim_gate.enter("quiet").await;
            victim_order.lock().unwrap().push("quiet".to_string());
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(first);
        victim.await.unwrap();
        for waiter in waiters {
            waiter.await.unwrap();
        }
        let order = order.lock().unwrap();
        let position = order.iter().position(|name| name == "quiet").unwrap();
        assert!(position <= 1, "the quiet namespace went {position}th");
        assert_eq!(order.len(), 1001);
        assert_eq!(gate.free(), 1);
    }

    #[tokio::test]
    async fn no_more_than_the_turns_run_at_once() {
        let gate = FairGate::new(2);
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|index| {
                let (gate, running, most) = (gate.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    let _turn = gate.enter(&format!("ns-{}", index % 3)).await;
                    let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(gate.free(), 2);
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_passes_its_turn_on() {
        let gate = FairGate::new(1);
        let held = gate.enter("a").await;
        let abandoned = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _turn = gate.enter("b").await;
            })
        };
        tokio::task::yield_now().await;
        abandoned.abort();
        let _ = abandoned.await;
        let next = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _turn = gate.enter("c").await;
            })
        };
        tokio::task::yield_now().await;
        drop(held);
        tokio::time::timeout(Duration::from_secs(1), next)
            .await
            .expect("the turn reached the next waiter")
            .unwrap();
        assert_eq!(gate.free(), 1);
    }
}
