//! The vocabulary every Strata crate shares: label sets, samples, label matchers
//! with Prometheus semantics, tenant IDs and the series hash used for sharding,
//! and the bound on bracket nesting checked before any YAML from outside is parsed.
//!
//! This crate owns no storage and no I/O. It deliberately keeps labels as plain
//! owned strings: storage engines intern them in their own structures, and this
//! type is what crosses crate boundaries.

mod duration;
mod labels;
mod matcher;
mod nesting;
mod sample;
mod tenant;
mod time;

pub use duration::{format_duration, parse_duration, ConfigDuration, DurationError};
pub use labels::{is_valid_label_name, is_valid_metric_name, Label, Labels, METRIC_NAME};
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use nesting::{check_bracket_nesting, NestingError, MAX_YAML_NESTING};
pub use sample::{is_stale_nan, Sample, Series, STALE_NAN, STALE_NAN_BITS};
pub use tenant::{validate_tenant_id, TenantError, MAX_TENANT_ID_LENGTH};
pub use time::Rfc3339;

/// The hash that places a series on the ingester ring: a 32-bit token derived from
/// the tenant and the series' sorted labels. Stable across processes and versions,
/// because it decides which ingesters hold a series.
pub fn shard_token(tenant: &str, labels: &Labels) -> u32 {
    shard_token_of(
        tenant,
        labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
    )
}

/// [`shard_token`] over label pairs already in sorted order (e.g. a validated
/// remote-write series), without building a [`Labels`].
pub fn shard_token_of<'a>(
    tenant: &str,
    sorted_labels: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> u32 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(tenant.as_bytes());
    hasher.update(&[0xff]);
    for (name, value) in sorted_labels {
        hasher.update(name.as_bytes());
        hasher.update(&[0xff]);
        hasher.update(value.as_bytes());
        hasher.update(&[0xff]);
    }
    let h = hasher.digest();
    (h ^ (h >> 32)) as u32
}
