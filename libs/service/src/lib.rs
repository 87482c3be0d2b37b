//! strata-service: what every Strata component has in common as a running
//! thing, after Grafana dskit's `services` package.
//!
//! - [`Service`]: a component's lifecycle in three steps — `starting` (replay a
//!   WAL, join a ring, first bucket sync), `running` (its loops or server,
//!   until told to stop), `stopping` (leave the ring, flush). Its [`State`]
//!   moves New → Starting → Running → Stopping → Terminated, or to Failed.
//! - [`ModuleGraph`]: a process's modules and what each depends on; gives the
//!   order in which the modules a `-target` names (and their dependencies)
//!   start. They stop in reverse.
//! - [`Manager`]: starts services in that order, watches them, and when any one
//!   fails — in any step, a server included — stops all the others in reverse
//!   and reports which one failed and why, so a dead loop or server is never
//!   silent. A shutdown request (SIGTERM) stops everything within a grace
//!   period.
//! - [`StatusBoard`]: every service's state, shared with the `/ready` handler:
//!   ready only when every service is Running and says it is ready itself.
//!
//! It knows nothing of flags, configs, HTTP or gRPC: the binary wires those.

mod graph;
mod loops;
mod manager;
mod service;
mod slot;

pub use graph::{DependencyError, ModuleGraph};
pub use loops::{watch_loops, LoopEnded};
pub use manager::{Manager, NotReady, Phase, RunError, StatusBoard};
pub use service::{BoxError, Service, State, Stop};
pub use slot::Slot;
