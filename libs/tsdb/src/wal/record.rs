//! Record payloads (what goes inside a frame) and the batch that encodes them.
//!
//! Every payload starts with a type byte. The ingester's one WAL is shared by
//! all its tenants, so every record names the tenant it belongs to, right after
//! its type (`tenant` below is `uvarint len, bytes`):
//!
//! ```text
//! Series       (16): tenant, { uvarint ref, uvarint n, n × { uvarint len, name, uvarint len, value } }*
//! Samples      (17): tenant, { varint Δref, varint Δtimestamp, u64 LE value bits }*
//! MinValidTime (18): tenant, varint timestamp
//! Exemplars    (19): tenant, { varint Δref, varint Δtimestamp, u64 LE value bits, uvarint n, n × label }*
//! LateSamples  (23): tenant, as Samples
//! ```
//!
//! Types 20–22 and 24–31 are reserved for the records planned with the shared
//! WAL (metadata 20, unused; integer histograms 21, float histograms 22; see
//! `docs/wal.md` for their layouts). A reader skips a record of a type it does
//! not know, counted in the replay's stats, so a WAL written by a newer version
//! still replays every record this one understands. Out-of-order samples are
//! ordinary Samples records (replay applies records in the order they were
//! logged, which is the order the head took them in), but for those that went
//! behind the tenant's block bound when they came: LateSamples records, which
//! replay takes back behind the bound (no block holds them yet), where it
//! refuses Samples (their block holds them).
//!
//! A MinValidTime record says that the tenant's samples before it are in
//! blocks, so a head replayed from the WAL refuses them even after those
//! blocks are gone from the ingester's disk.
//!
//! Types 1–3 are the same three records without a tenant: the per-tenant WAL
//! directories of earlier versions (`<tenant>/wal/`), read once when an ingester
//! migrates them into the shared WAL, never written.
//!
//! Sample deltas are taken from the previous sample of the same record (the first
//! from ref 0 and timestamp 0), zigzag-encoded, so a run of one series' samples
//! costs about 10 bytes a sample.

use strata_model::{Label, Labels, Sample};

use crate::exemplars::Exemplar;

use super::error::TooLarge;
use super::frame::{frame, MAX_RECORD_LEN};
use crate::head::SeriesRef;

const LEGACY_SERIES: u8 = 1;
const LEGACY_SAMPLES: u8 = 2;
const LEGACY_MIN_VALID_TIME: u8 = 3;
const TYPE_SERIES: u8 = 16;
const TYPE_SAMPLES: u8 = 17;
const TYPE_MIN_VALID_TIME: u8 = 18;
const TYPE_EXEMPLARS: u8 = 19;
const TYPE_LATE_SAMPLES: u8 = 23;
/// The types this version reserves but does not write yet.
fn is_reserved(kind: u8) -> bool {
    matches!(kind, 20..=22 | 24..=31)
}

/// A batch closes a record once its payload passes this size, so records stay
/// small enough to read into one buffer.
const TARGET_RECORD_LEN: usize = 1 << 20;

/// A series as logged: its ref and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefSeries {
    pub series_ref: SeriesRef,
    pub labels: Labels,
}

/// A sample as logged, with the ref of its series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefSample {
    pub series_ref: SeriesRef,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// An exemplar as logged, with the ref of its series.
#[derive(Debug, Clone, PartialEq)]
pub struct RefExemplar {
    pub series_ref: SeriesRef,
    pub exemplar: Exemplar,
}

/// A samples record being encoded, with its own delta bases.
#[derive(Debug, Default)]
struct OpenSamples {
    buf: Vec<u8>,
    prev_ref: u64,
    prev_ts: i64,
}

/// One decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Series(Vec<RefSeries>),
    Samples(Vec<RefSample>),
    /// Samples before this timestamp (ms) are in blocks: a head replayed from
    /// the WAL must not take them again.
    MinValidTime(i64),
    Exemplars(Vec<RefExemplar>),
    /// Late samples that went behind the tenant's block bound when they came.
    LateSamples(Vec<RefSample>),
}

/// Records to log in one write, encoded and framed as they are added.
///
/// A batch keeps one series record and one samples record open and always writes
/// the series record first, so a series added to a batch is defined before any
/// sample of the same batch that refers to it. Reuse a batch to reuse its buffers:
/// [`Wal::log`](super::Wal::log) empties it.
#[derive(Debug, Default)]
pub struct WalBatch {
    /// The tenant of the records added next.
    tenant: String,
    /// Finished frames.
    frames: Vec<u8>,
    series: Vec<u8>,
    samples: OpenSamples,
    late_samples: OpenSamples,
    /// The open exemplars record and its own delta bases.
    exemplars: Vec<u8>,
    prev_exemplar_ref: u64,
    prev_exemplar_ts: i64,
    num_series: usize,
    num_samples: usize,
    num_exemplars: usize,
    /// Frames in `frames`.
    num_records: usize,
}

impl WalBatch {
    /// An empty batch whose records belong to `tenant`.
    pub fn new(tenant: &str) -> Self {
        Self {
            tenant: tenant.to_string(),
            ..Self::default()
        }
    }

    /// The tenant of the records added next.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Makes the records added from now on `tenant`'s; the open records of
    /// another tenant are closed first. One batch may so carry several tenants'
    /// records (a checkpoint's).
    pub fn set_tenant(&mut self, tenant: &str) {
        if self.tenant != tenant {
            self.close_samples();
            self.tenant.clear();
            self.tenant.push_str(tenant);
        }
    }

    /// The type byte and the tenant: how every record starts.
    fn start_record(out: &mut Vec<u8>, kind: u8, tenant: &str) {
        out.push(kind);
        put_bytes(out, tenant.as_bytes());
    }

    /// Adds a series definition. Fails only if its labels alone exceed the
    /// largest record a reader accepts.
    pub fn add_series(&mut self, series_ref: SeriesRef, labels: &Labels) -> Result<(), TooLarge> {
        let len = Self::check_series(labels)?;
        if self.series.len() + len > TARGET_RECORD_LEN {
            self.close_series();
        }
        if self.series.is_empty() {
            Self::start_record(&mut self.series, TYPE_SERIES, &self.tenant);
        }
        put_uvarint(&mut self.series, series_ref.0);
        put_uvarint(&mut self.series, labels.len() as u64);
        for Label { name, value } in labels.iter() {
            put_bytes(&mut self.series, name.as_bytes());
            put_bytes(&mut self.series, value.as_bytes());
        }
        self.num_series += 1;
        Ok(())
    }

    /// Whether a series record for `labels` fits in one WAL record; the
    /// bound on its encoded length if so. Checked before a series is created,
    /// so that a series in the head is always one the WAL can record.
    pub fn check_series(labels: &Labels) -> Result<usize, TooLarge> {
        // 20 for the type, the tenant's length, the ref and the label count;
        // a tenant ID is at most 150 bytes (strata_model::MAX_TENANT_ID_LENGTH).
        let len = 20
            + strata_model::MAX_TENANT_ID_LENGTH
            + labels
                .iter()
                .map(|l| l.name.len() + l.value.len() + 20)
                .sum::<usize>();
        if len >= MAX_RECORD_LEN {
            return Err(TooLarge { len });
        }
        Ok(len)
    }

    /// Adds one sample of the series `series_ref`.
    pub fn add_sample(&mut self, series_ref: SeriesRef, timestamp_ms: i64, value: f64) {
        self.add_to(false, series_ref, timestamp_ms, value);
    }

    /// Adds one late sample of the series `series_ref` that went behind the
    /// tenant's block bound ([`Record::LateSamples`]).
    pub fn add_late_sample(&mut self, series_ref: SeriesRef, timestamp_ms: i64, value: f64) {
        self.add_to(true, series_ref, timestamp_ms, value);
    }

    fn add_to(&mut self, late: bool, series_ref: SeriesRef, timestamp_ms: i64, value: f64) {
        let open = if late {
            &self.late_samples
        } else {
            &self.samples
        };
        if open.buf.len() + 30 > TARGET_RECORD_LEN {
            self.close_samples();
        }
        let (open, kind) = if late {
            (&mut self.late_samples, TYPE_LATE_SAMPLES)
        } else {
            (&mut self.samples, TYPE_SAMPLES)
        };
        if open.buf.is_empty() {
            Self::start_record(&mut open.buf, kind, &self.tenant);
            open.prev_ref = 0;
            open.prev_ts = 0;
        }
        put_varint(
            &mut open.buf,
            series_ref.0.wrapping_sub(open.prev_ref) as i64,
        );
        put_varint(&mut open.buf, timestamp_ms.wrapping_sub(open.prev_ts));
        open.buf.extend_from_slice(&value.to_bits().to_le_bytes());
        open.prev_ref = series_ref.0;
        open.prev_ts = timestamp_ms;
        self.num_samples += 1;
    }

    /// Adds one exemplar of the series `series_ref`. Its labels are small
    /// (the distributor allows 128 runes), so a record never outgrows a frame.
    pub fn add_exemplar(&mut self, series_ref: SeriesRef, exemplar: &Exemplar) {
        let len = 32
            + exemplar
                .labels
                .iter()
                .map(|l| l.name.len() + l.value.len() + 20)
                .sum::<usize>();
        if self.exemplars.len() + len > TARGET_RECORD_LEN {
            self.close_samples();
        }
        if self.exemplars.is_empty() {
            Self::start_record(&mut self.exemplars, TYPE_EXEMPLARS, &self.tenant);
            self.prev_exemplar_ref = 0;
            self.prev_exemplar_ts = 0;
        }
        let out = &mut self.exemplars;
        put_varint(
            out,
            series_ref.0.wrapping_sub(self.prev_exemplar_ref) as i64,
        );
        put_varint(
            out,
            exemplar.timestamp_ms.wrapping_sub(self.prev_exemplar_ts),
        );
        out.extend_from_slice(&exemplar.value.to_bits().to_le_bytes());
        put_uvarint(out, exemplar.labels.len() as u64);
        for Label { name, value } in exemplar.labels.iter() {
            put_bytes(out, name.as_bytes());
            put_bytes(out, value.as_bytes());
        }
        self.prev_exemplar_ref = series_ref.0;
        self.prev_exemplar_ts = exemplar.timestamp_ms;
        self.num_exemplars += 1;
    }

    /// Adds samples of the series `series_ref`.
    pub fn add_samples(&mut self, series_ref: SeriesRef, samples: &[Sample]) {
        for s in samples {
            self.add_sample(series_ref, s.timestamp_ms, s.value);
        }
    }

    /// Adds a [`Record::MinValidTime`] record, after the open records.
    pub fn add_min_valid_time(&mut self, timestamp_ms: i64) {
        self.close_samples();
        let mut payload = Vec::with_capacity(self.tenant.len() + 12);
        Self::start_record(&mut payload, TYPE_MIN_VALID_TIME, &self.tenant);
        put_varint(&mut payload, timestamp_ms);
        frame(&mut self.frames, &payload);
        self.num_records += 1;
    }

    /// Adds a decoded record.
    pub fn add_record(&mut self, record: &Record) -> Result<(), TooLarge> {
        match record {
            Record::MinValidTime(t) => self.add_min_valid_time(*t),
            Record::Series(series) => {
                for s in series {
                    self.add_series(s.series_ref, &s.labels)?;
                }
            }
            Record::Samples(samples) => {
                for s in samples {
                    self.add_sample(s.series_ref, s.timestamp_ms, s.value);
                }
            }
            Record::LateSamples(samples) => {
                for s in samples {
                    self.add_late_sample(s.series_ref, s.timestamp_ms, s.value);
                }
            }
            Record::Exemplars(exemplars) => {
                for e in exemplars {
                    self.add_exemplar(e.series_ref, &e.exemplar);
                }
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
            && self.series.is_empty()
            && self.samples.buf.is_empty()
            && self.late_samples.buf.is_empty()
            && self.exemplars.is_empty()
    }

    /// Series and samples added since the batch was last emptied.
    pub fn counts(&self) -> (usize, usize) {
        (self.num_series, self.num_samples)
    }

    /// Exemplars added since the batch was last emptied.
    pub fn exemplar_count(&self) -> usize {
        self.num_exemplars
    }

    /// Empties the batch; its tenant stays.
    pub fn clear(&mut self) {
        self.frames.clear();
        self.series.clear();
        self.samples.buf.clear();
        self.late_samples.buf.clear();
        self.exemplars.clear();
        self.num_series = 0;
        self.num_samples = 0;
        self.num_exemplars = 0;
        self.num_records = 0;
    }

    /// Closes the open records and returns every frame of the batch and how
    /// many frames that is.
    pub(super) fn finish(&mut self) -> (&[u8], usize) {
        self.close_samples();
        (&self.frames, self.num_records)
    }

    fn close_series(&mut self) {
        if !self.series.is_empty() {
            frame(&mut self.frames, &self.series);
            self.series.clear();
            self.num_records += 1;
        }
    }

    /// Closes the samples and exemplars records, after the series record so
    /// that the series they may refer to come first.
    fn close_samples(&mut self) {
        self.close_series();
        for open in [
            &mut self.samples.buf,
            &mut self.late_samples.buf,
            &mut self.exemplars,
        ] {
            if !open.is_empty() {
                frame(&mut self.frames, open);
                open.clear();
                self.num_records += 1;
            }
        }
    }
}

/// Whether `kind` is a record type some version writes: what a frame found
/// while resynchronising after damage must start with.
pub(super) fn is_known_type(kind: u8) -> bool {
    matches!(
        kind,
        LEGACY_SERIES..=LEGACY_MIN_VALID_TIME | TYPE_SERIES..=TYPE_EXEMPLARS | TYPE_LATE_SAMPLES
    ) || is_reserved(kind)
}

/// A decoded payload: the record and its tenant (`None` for the tenant-less
/// records of a per-tenant WAL of earlier versions).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Decoded {
    Record {
        tenant: Option<String>,
        record: Record,
    },
    /// A type this version reserves or does not know: skipped.
    Skipped(u8),
}

/// Decodes a frame's payload; the error says what is malformed.
pub(super) fn decode(payload: &[u8]) -> Result<Decoded, String> {
    let (&kind, mut rest) = payload
        .split_first()
        .ok_or_else(|| "empty record".to_string())?;
    let tenant = match kind {
        TYPE_SERIES | TYPE_SAMPLES | TYPE_MIN_VALID_TIME | TYPE_EXEMPLARS | TYPE_LATE_SAMPLES => {
            Some(get_str(&mut rest)?)
        }
        LEGACY_SERIES | LEGACY_SAMPLES | LEGACY_MIN_VALID_TIME => None,
        other if is_reserved(other) => return Ok(Decoded::Skipped(other)),
        other => return Err(format!("unknown record type {other}")),
    };
    let record = match kind {
        TYPE_SERIES | LEGACY_SERIES => Record::Series(decode_series(rest)?),
        TYPE_SAMPLES | LEGACY_SAMPLES => Record::Samples(decode_samples(rest)?),
        TYPE_EXEMPLARS => Record::Exemplars(decode_exemplars(rest)?),
        TYPE_LATE_SAMPLES => Record::LateSamples(decode_samples(rest)?),
        _ => {
            let t = get_varint(&mut rest)?;
            if !rest.is_empty() {
                return Err(format!(
                    "min-valid-time record: {} trailing bytes",
                    rest.len()
                ));
            }
            Record::MinValidTime(t)
        }
    };
    Ok(Decoded::Record { tenant, record })
}

fn decode_series(mut rest: &[u8]) -> Result<Vec<RefSeries>, String> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let series_ref = SeriesRef(get_uvarint(&mut rest)?);
        let labels = get_labels(&mut rest, "series")?;
        out.push(RefSeries { series_ref, labels });
    }
    Ok(out)
}

fn decode_samples(mut rest: &[u8]) -> Result<Vec<RefSample>, String> {
    let mut out = Vec::with_capacity(rest.len() / 10);
    let mut prev_ref = 0u64;
    let mut prev_ts = 0i64;
    while !rest.is_empty() {
        prev_ref = prev_ref.wrapping_add(get_varint(&mut rest)? as u64);
        prev_ts = prev_ts.wrapping_add(get_varint(&mut rest)?);
        let (bits, tail) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| "samples record: truncated value".to_string())?;
        rest = tail;
        out.push(RefSample {
            series_ref: SeriesRef(prev_ref),
            timestamp_ms: prev_ts,
            value: f64::from_bits(u64::from_le_bytes(*bits)),
        });
    }
    Ok(out)
}

fn decode_exemplars(mut rest: &[u8]) -> Result<Vec<RefExemplar>, String> {
    let mut out = Vec::new();
    let mut prev_ref = 0u64;
    let mut prev_ts = 0i64;
    while !rest.is_empty() {
        prev_ref = prev_ref.wrapping_add(get_varint(&mut rest)? as u64);
        prev_ts = prev_ts.wrapping_add(get_varint(&mut rest)?);
        let (bits, tail) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| "exemplars record: truncated value".to_string())?;
        rest = tail;
        let labels = get_labels(&mut rest, "exemplars")?;
        out.push(RefExemplar {
            series_ref: SeriesRef(prev_ref),
            exemplar: Exemplar {
                labels,
                value: f64::from_bits(u64::from_le_bytes(*bits)),
                timestamp_ms: prev_ts,
            },
        });
    }
    Ok(out)
}

/// Encodes `record` in the tenant-less format of earlier versions' per-tenant
/// WALs, for the tests of the migration from them.
#[cfg(test)]
pub(super) fn encode_legacy(record: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    match record {
        Record::Series(list) => {
            out.push(LEGACY_SERIES);
            for s in list {
                put_uvarint(&mut out, s.series_ref.0);
                put_uvarint(&mut out, s.labels.len() as u64);
                for Label { name, value } in s.labels.iter() {
                    put_bytes(&mut out, name.as_bytes());
                    put_bytes(&mut out, value.as_bytes());
                }
            }
        }
        Record::Samples(list) => {
            out.push(LEGACY_SAMPLES);
            let (mut prev_ref, mut prev_ts) = (0u64, 0i64);
            for s in list {
                put_varint(&mut out, s.series_ref.0.wrapping_sub(prev_ref) as i64);
                put_varint(&mut out, s.timestamp_ms.wrapping_sub(prev_ts));
                out.extend_from_slice(&s.value.to_bits().to_le_bytes());
                prev_ref = s.series_ref.0;
                prev_ts = s.timestamp_ms;
            }
        }
        Record::MinValidTime(t) => {
            out.push(LEGACY_MIN_VALID_TIME);
            put_varint(&mut out, *t);
        }
        Record::Exemplars(_) | Record::LateSamples(_) => {
            unreachable!("earlier versions wrote no exemplars and no late samples")
        }
    }
    out
}

/// A payload of a reserved type, for the tests that a reader skips it.
#[cfg(test)]
pub(super) fn encode_reserved(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(body);
    out
}

fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

fn get_uvarint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        if i == 9 && b > 1 {
            return Err("varint overflows 64 bits".to_string());
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *buf = &buf[i + 1..];
            return Ok(v);
        }
    }
    Err("truncated varint".to_string())
}

fn get_varint(buf: &mut &[u8]) -> Result<i64, String> {
    let u = get_uvarint(buf)?;
    Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
}

/// `uvarint n, n × { uvarint len, name, uvarint len, value }`, as a series
/// or an exemplar record holds a label set; `record` names it in errors.
fn get_labels(buf: &mut &[u8], record: &str) -> Result<Labels, String> {
    let n = get_uvarint(buf)?;
    // Each label takes at least two bytes: never trust a count further.
    if n > buf.len() as u64 / 2 {
        return Err(format!(
            "{record} record: {n} labels in {} bytes",
            buf.len()
        ));
    }
    let mut labels = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let name = get_str(buf)?;
        let value = get_str(buf)?;
        labels.push(Label::new(name, value));
    }
    Ok(Labels::new(labels))
}

fn get_str(buf: &mut &[u8]) -> Result<String, String> {
    let len = get_uvarint(buf)?;
    if len > buf.len() as u64 {
        return Err(format!(
            "string of {len} bytes with {} bytes left",
            buf.len()
        ));
    }
    let (s, rest) = buf.split_at(len as usize);
    *buf = rest;
    String::from_utf8(s.to_vec()).map_err(|_| "label is not UTF-8".to_string())
}
