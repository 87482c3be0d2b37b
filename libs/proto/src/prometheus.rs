//! Prometheus remote-write 1.0 and remote read (package `prometheus`),
//! generated from `proto/remote.proto`. A file of its own so that the generated code (and its
//! lint exceptions) stays apart from the hand-written conversions.

// Generated code: prost and tonic decide its shape, not our lints.
#![allow(missing_debug_implementations, unreachable_pub, clippy::all)]

tonic::include_proto!("prometheus");
