//! Threshold scaling against the cases Kubernetes documents, and the autoscaler's driving,
//! dry runs and decision log.

mod autoscaler;
mod predictive;
mod replicas;
mod threshold;
