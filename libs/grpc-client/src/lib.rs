//! What every gRPC client between Strata's components does the same way,
//! whatever the service: a [`Peer`] connects lazily with the configured
//! timeouts, sends the tenant (`x-scope-orgid`) and the trace context with
//! each call, opens the call's client span and names itself in server-side
//! errors; [`grpc_uri`] turns the `host:port` a ring or a flag holds into the
//! URI tonic wants; [`local_or_remote`] makes the client factory that answers
//! this process's own address with the in-process client and any other with
//! a remote one; [`in_process`] calls a service's gRPC trait directly with the
//! same tenant metadata and error mapping as a remote call; [`ClientTarget`]
//! is a client's choice between the two, each call written once.
//!
//! The clients themselves belong to their services (`strata_ingester::
//! IngesterClient`, `strata_store_gateway::StoreGatewayClient`). Nothing here
//! knows a service, a flag or a process: timeouts arrive as [`ClientOptions`].

mod peer;
mod target;

pub use peer::{grpc_uri, in_process, local_or_remote, ClientFactory, ClientOptions, Peer};
pub use target::{CallSpan, ClientTarget};
