//! The compactor: keeps each tenant's blocks in object storage few and tidy.
//!
//! Every `compaction_interval` (or on `POST /compactor/run`) it makes one pass
//! over every tenant of the bucket, one tenant and one job at a time:
//!
//! 1. lists the tenant's objects once and reads each complete block's
//!    `meta.json` and deletion mark; deletes block directories without
//!    `meta.json` (abandoned uploads) once they are older than
//!    `partial_block_deletion_delay`;
//! 2. marks blocks past the tenant's `compactor_blocks_retention_period`, and
//!    blocks whose data another block already holds (an interrupted
//!    compaction's sources), for deletion;
//! 3. merges blocks as the [`planner`] says — first the overlapping RF copies
//!    of a range (vertical compaction, each sample kept once), then adjacent
//!    blocks up the `block_ranges` levels (2h → 12h → 24h) — each job:
//!    download the sources to `data_dir`, merge them
//!    ([`strata_tsdb::block::compact`]), upload the result (`meta.json`
//!    last), and only then mark the sources for deletion;
//! 4. deletes blocks marked longer than `deletion_delay` ago (`meta.json`
//!    first);
//! 5. writes the tenant's bucket index (`<tenant>/bucket-index.json.gz`).
//!
//! Every step leaves the bucket valid if the process dies there: a block is
//! visible only once its `meta.json` exists, sources are marked only after the
//! result is complete, and a result and its unmarked sources both being there
//! is repaired by step 2 of the next pass (no sample is lost; readers
//! deduplicate the overlap meanwhile).
//!
//! Several compactors share a bucket by the compactor ring (see
//! [`CompactorService`]): each tenant is compacted by one of them.
//!
//! It does not: split large tenants' compactions, downsample, honour no-compact marks, or compact
//! native-histogram chunks.

mod compactor;
mod config;
mod error;
mod http;
mod lifecycle;
mod metrics;
mod planner;

pub use compactor::{Compactor, PassStats, TenantOwnership};
pub use config::{BlockRanges, CompactorConfig, CompactorConfigError};
pub use error::CompactorError;
pub use http::router;
pub use lifecycle::{compactor_ring_config, CompactorService, LifecycleError, RingOwnership};
