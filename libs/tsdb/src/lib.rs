//! Strata's time-series storage engine for one tenant at a time.
//!
//! It owns the Prometheus XOR chunk encoding ([`chunk`], bit-exact with
//! Prometheus so chunks can be shipped to queriers and written into blocks
//! unchanged), the in-memory head that holds a tenant's recent series ([`head`]:
//! label interning, per-series chunk lists, the append rules for out-of-order and
//! duplicate samples) and the postings index that selects series by label matchers
//! ([`postings`] holds the sorted-list set operations and the matcher algorithm
//! that the head and the block index share), and the
//! write-ahead log that makes a head survive a crash ([`wal`]: CRC32C-framed
//! segments, group-commit fsync, replay, checkpoints), and Prometheus's block
//! format ([`block`]: writing a head's range as a block, reading blocks'
//! index and chunks, as promtool reads them), and the label strings that the
//! heads of one process share ([`strings`]), and a tenant's exemplars
//! ([`exemplars`]: a bounded circular buffer by series ref, logged in the WAL).
//!
//! It deliberately knows nothing about tenants, the network or configuration: the
//! ingester keeps one [`head::Head`] and one [`wal::Wal`] per tenant and turns
//! [`head::AppendError`]s into client-facing statuses.

pub mod block;
pub mod chunk;
pub mod exemplars;
pub mod head;
pub mod postings;
pub mod strings;
pub mod wal;
