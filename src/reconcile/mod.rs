//! Reconcile: read -> decide (pure) -> apply -> requeue.
