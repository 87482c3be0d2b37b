//! The whole process's configuration: one YAML document whose sections belong to
//! the components; [`Config::validate`], which runs each component's own checks
//! so that `-config.verify` refuses what a start would; and the table that
//! documents every key, the one place its help text is written (it drives
//! `-help`, the flags and docs/configuration.md, and a test keeps it complete;
//! the config structs' fields carry no doc comments of their own).

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use strata_distributor::DistributorConfig;
use strata_ingester::IngesterConfig;
use strata_limits::Limits;
use strata_querier::QuerierConfig;

use crate::modules::Module;

/// What is wrong with a configuration: the key it is about (a dotted config
/// path such as `querier.timeout`, or the flag or file that could not be
/// used: `config.file`, `-querier.timeot`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// A key relative to `section` (`querier` and `timeout`: `querier.timeout`).
    fn in_section(section: &str, key: &str, reason: impl Into<String>) -> Self {
        Self::new(format!("{section}.{key}"), reason)
    }
}

/// `target`: the modules this process runs, parsed from `all` or
/// comma-separated names ([`Module::parse_target`]) when the config is read,
/// and written back as it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    text: String,
    modules: Vec<Module>,
}

impl Target {
    pub fn parse(text: &str) -> Result<Self, String> {
        let modules = Module::parse_target(text).map_err(|e| {
            let valid: Vec<&str> = std::iter::once("all")
                .chain(Module::ALL_TARGET.iter().map(|m| m.name()))
                .collect();
            format!("{e}; valid targets are {}", valid.join(", "))
        })?;
        Ok(Self {
            text: text.to_string(),
            modules,
        })
    }

    /// The modules named, each once.
    pub fn modules(&self) -> &[Module] {
        &self.modules
    }

    pub fn runs(&self, module: Module) -> bool {
        self.modules.contains(&module)
    }
}

impl Default for Target {
    fn default() -> Self {
        Self {
            text: "all".to_string(),
            modules: Module::ALL_TARGET.to_vec(),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Target::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub target: Target,
    pub multitenancy_enabled: bool,
    pub server: ServerConfig,
    pub distributor: DistributorConfig,
    pub ingester_client: PushClientConfig,
    pub ingester: IngesterConfig,
    pub blocks_storage: strata_storage::BlocksStorageConfig,
    pub querier: QuerierConfig,
    pub store_gateway: strata_store_gateway::StoreGatewayConfig,
    pub compactor: strata_compactor::CompactorConfig,
    pub limits: Limits,
    pub runtime_config: RuntimeConfigSettings,
    pub auth: strata_auth::AuthConfig,
    pub tracing: strata_telemetry::TracingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            target: Target::default(),
            multitenancy_enabled: true,
            server: ServerConfig::default(),
            distributor: DistributorConfig::default(),
            ingester_client: PushClientConfig::default(),
            ingester: IngesterConfig::default(),
            blocks_storage: strata_storage::BlocksStorageConfig::default(),
            querier: QuerierConfig::default(),
            store_gateway: strata_store_gateway::StoreGatewayConfig::default(),
            compactor: strata_compactor::CompactorConfig::default(),
            limits: Limits::default(),
            runtime_config: RuntimeConfigSettings::default(),
            auth: strata_auth::AuthConfig::default(),
            tracing: strata_telemetry::TracingConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub http_listen_address: String,
    pub http_listen_port: u16,
    pub grpc_listen_address: String,
    pub grpc_listen_port: u16,
    pub log_level: String,
    pub log_format: String,
    pub graceful_shutdown_timeout: strata_model::ConfigDuration,
    pub http_server_read_timeout: strata_model::ConfigDuration,
    pub http_server_write_timeout: strata_model::ConfigDuration,
    pub http_server_idle_timeout: strata_model::ConfigDuration,
    pub http_server_max_connections: usize,
    pub grpc_server_keepalive_time: strata_model::ConfigDuration,
    pub grpc_server_keepalive_timeout: strata_model::ConfigDuration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http_listen_address: "127.0.0.1".to_string(),
            http_listen_port: 9009,
            grpc_listen_address: "127.0.0.1".to_string(),
            grpc_listen_port: 9095,
            log_level: "info".to_string(),
            log_format: "logfmt".to_string(),
            graceful_shutdown_timeout: strata_model::ConfigDuration::from_secs(30),
            http_server_read_timeout: strata_model::ConfigDuration::from_secs(120),
            http_server_write_timeout: strata_model::ConfigDuration::from_secs(150),
            http_server_idle_timeout: strata_model::ConfigDuration::from_secs(120),
            http_server_max_connections: 4096,
            grpc_server_keepalive_time: strata_model::ConfigDuration::from_secs(2 * 3600),
            grpc_server_keepalive_timeout: strata_model::ConfigDuration::from_secs(20),
        }
    }
}

/// The top-level `ingester_client` section: how a distributor's clients push
/// to ingesters (which ingesters: the ring in `ingester.ring`). Not the
/// querier's clients to ingesters, which are `querier.ingester_client`
/// ([`strata_querier::QueryClientConfig`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushClientConfig {
    pub remote_timeout: strata_model::ConfigDuration,
}

impl Default for PushClientConfig {
    fn default() -> Self {
        Self {
            remote_timeout: strata_model::ConfigDuration::from_secs(5),
        }
    }
}

impl Config {
    /// Deserialises a YAML tree (file merged with flags) and validates it.
    pub fn from_tree(tree: Value) -> Result<Config, ConfigError> {
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let path = e.path().to_string();
            let reason = e.into_inner().to_string();
            // The path includes a key no section knows.
            let key = if path == "." { "config.file" } else { &path };
            ConfigError::new(key, reason)
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Every check a module of this target makes of its settings when it
    /// starts, each by that module's own validate function, so that
    /// `-config.verify` rejects what the start would reject; and the checks
    /// of the sections that run whatever the target (server, tracing, limits,
    /// runtime config, auth, the ingester ring every process reads, blocks
    /// storage, compactor). The files the config names (auth.tenants_file,
    /// runtime_config.file) are not read here: the start reads them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let target = &self.target;
        let server = &self.server;
        strata_telemetry::check_log_level(&server.log_level)
            .map_err(|e| ConfigError::new("server.log_level", e.to_string()))?;
        strata_telemetry::check_log_format(&server.log_format)
            .map_err(|e| ConfigError::new("server.log_format", e.to_string()))?;
        crate::addresses::socket_addr(&server.http_listen_address, server.http_listen_port)
            .map_err(|e| ConfigError::new("server.http_listen_address", e.to_string()))?;
        // The modules that serve gRPC (wiring.rs gives the gRPC server their
        // services; with none it is not started).
        if target.runs(Module::Ingester) || target.runs(Module::StoreGateway) {
            crate::addresses::socket_addr(&server.grpc_listen_address, server.grpc_listen_port)
                .map_err(|e| ConfigError::new("server.grpc_listen_address", e.to_string()))?;
        }
        self.tracing
            .validate()
            .map_err(|e| ConfigError::in_section("tracing", e.key, e.reason))?;
        self.limits
            .validate()
            .map_err(|e| ConfigError::in_section("limits", e.key, e.reason))?;
        self.runtime_config.validate()?;
        self.auth
            .validate(self.multitenancy_enabled)
            .map_err(|e| match e {
                strata_auth::AuthError::Config { key, reason } => ConfigError::new(key, reason),
                other => ConfigError::new("auth", other.to_string()),
            })?;

        // Every process keeps a copy of the ingester ring; an ingester joins it.
        let ring = effective_ring_config(self);
        let ring_error = |e: strata_ring::ConfigError| {
            ConfigError::in_section("ingester.ring", e.key, e.message)
        };
        ring.validate().map_err(ring_error)?;
        if target.runs(Module::Ingester) {
            ring.validate_lifecycler().map_err(ring_error)?;
        }
        let shared_ring = ring.kvstore.store == strata_ring::KvStoreKind::Etcd;
        if self.distributor.ha_tracker.enable_ha_tracker {
            self.distributor.ha_tracker.validate().map_err(|e| {
                ConfigError::new("distributor.ha_tracker.ha_tracker_failover_timeout", e)
            })?;
        }

        self.blocks_storage.validate().map_err(|e| match e {
            strata_storage::StorageError::Config { key, value, reason } => ConfigError::in_section(
                "blocks_storage",
                key,
                format!("invalid value {value:?}: {reason}"),
            ),
            strata_storage::StorageError::Unsupported(_) => {
                ConfigError::new("blocks_storage.backend", e.to_string())
            }
            other => ConfigError::new("blocks_storage", other.to_string()),
        })?;

        if target.runs(Module::Querier) {
            self.querier
                .validate()
                .map_err(|e| ConfigError::in_section("querier", e.key, e.reason))?;
        }
        // A store-gateway joins its ring; a querier reads it when a
        // store-gateway can exist (its own, or others' through etcd).
        let store_gateway = target.runs(Module::StoreGateway);
        if store_gateway || (target.runs(Module::Querier) && shared_ring) {
            self.store_gateway
                .validate(&ring, store_gateway)
                .map_err(|e| {
                    if e.key.starts_with("sharding_ring.") {
                        ConfigError::in_section("store_gateway", e.key, e.message)
                    } else {
                        ring_error(e)
                    }
                })?;
        }

        self.compactor.validate().map_err(|e| {
            ConfigError::in_section(
                "compactor",
                e.key,
                format!("invalid value {:?}: {}", e.value, e.reason),
            )
        })?;
        // Compactors sharing a bucket join the compactor ring, made of the
        // ingester ring's settings.
        if target.runs(Module::Compactor) && shared_ring {
            strata_compactor::compactor_ring_config(&ring)
                .validate_lifecycler()
                .map_err(ring_error)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    String,
    Int,
    Bool,
    Duration,
    /// A YAML sequence of strings; comma-separated as a flag.
    List,
    /// A number that may have a fraction.
    Float,
}

impl FieldKind {
    pub fn value_name(self) -> &'static str {
        match self {
            FieldKind::String => "string",
            FieldKind::Int => "int",
            FieldKind::Bool => "bool",
            FieldKind::Duration => "duration",
            FieldKind::List => "list of strings",
            FieldKind::Float => "float",
        }
    }
}

/// One documented config key.
#[derive(Debug)]
pub struct FieldDoc {
    pub path: &'static str,
    pub kind: FieldKind,
    pub help: &'static str,
}

impl FieldDoc {
    /// The built-in default, read from `Config::default()` so it cannot drift.
    pub fn default_text(&self) -> String {
        let tree = serde_yaml::to_value(Config::default()).unwrap_or(Value::Null);
        let mut node = &tree;
        for part in self.path.split('.') {
            node = match node.get(part) {
                Some(n) => n,
                None => return String::new(),
            };
        }
        match node {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => String::new(),
            other => serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }
}

macro_rules! fields {
    ($($path:literal $kind:ident $help:literal,)*) => {
        pub const FIELD_DOCS: &[FieldDoc] = &[$(FieldDoc { path: $path, kind: FieldKind::$kind, help: $help },)*];
    };
}

fields! {
    "target" String "Comma-separated modules to run: all, distributor, ingester, querier, store-gateway, compactor.",
    "multitenancy_enabled" Bool "When false, every request belongs to the tenant `anonymous` and no tenant header is needed.",
    "auth.enabled" Bool "Require a credential from auth.tenants_file (basic auth or bearer token) on every push and query, and one with the admin scope on the admin routes (flush, compaction, ring forget, /config, /runtime_config, the HA tracker); the tenant comes from the credential. Off: trust X-Scope-OrgID, as Mimir does. See docs/authentication.md.",
    "auth.tenants_file" String "YAML file mapping credentials (bcrypt or salted SHA-256 hashes) to tenants and read/write/admin scopes; re-read when it changes. Required when auth.enabled.",
    "auth.max_failures_per_source" Int "Failed authentications from one address (IPv6: one /64) within auth.failure_window after which its requests get 429 with Retry-After until the window ends (strata_auth_throttled_requests_total). 0: no back-off. Behind a proxy every client shares the proxy's address.",
    "auth.failure_window" Duration "The window of auth.max_failures_per_source, opened by an address's first failure.",
    "server.http_listen_address" String "Address the HTTP server listens on.",
    "server.http_listen_port" Int "Port of the HTTP server (push, query API, /metrics, /ready).",
    "server.grpc_listen_address" String "Address the gRPC server listens on.",
    "server.http_server_read_timeout" Duration "Longest a request's body may take to arrive (a stalled push is cut off with 400). Mimir's name.",
    "server.http_server_write_timeout" Duration "Longest a request may take from its headers to its answer; beyond it 408. Above querier.timeout, so a slow query fails with its own timeout first. POST /ingester/flush and /compactor/run run to completion regardless.",
    "server.http_server_idle_timeout" Duration "Longest wait for a request's headers, and for the next request on an idle keep-alive connection; then the connection is closed (strata_http_connections_closed_total{reason=\"header_timeout\"}).",
    "server.http_server_max_connections" Int "Most HTTP connections open at once; more are closed at once (strata_http_connections_closed_total{reason=\"connection_limit\"}). 0: no limit.",
    "server.grpc_server_keepalive_time" Duration "Idle time after which the gRPC server pings a client connection (HTTP/2 keep-alive).",
    "server.grpc_server_keepalive_timeout" Duration "How long the gRPC server waits for a keep-alive ping's answer before closing the connection.",
    "server.grpc_listen_port" Int "Port of the gRPC server (ingester service).",
    "server.log_level" String "Log level: error, warn, info, debug or trace.",
    "server.log_format" String "Log format: logfmt or json.",
    "server.graceful_shutdown_timeout" Duration "On SIGTERM, how long stopping every service may take: leaving the rings, the flush on shutdown, in-flight requests. What still runs then is named in the last log line and the process exits non-zero.",
    "ingester_client.remote_timeout" Duration "Longest a push to one ingester may take; a slower replica counts as failed for the quorum.",
    "distributor.max_inflight_push_requests_per_ingester" Int "Pushes one distributor keeps in flight to one ingester at most; beyond it that replica counts as failed at once (strata_distributor_ingester_inflight_limit_reached_total), so a hung ingester cannot make the distributor hold requests without bound until they time out. 0: no limit.",
    "distributor.max_recv_msg_size" Int "Largest remote-write push accepted, in bytes, both compressed and decompressed; larger pushes get 413 or 400.",
    "distributor.ha_tracker.enable_ha_tracker" Bool "De-duplicate Prometheus HA pairs for tenants with limits.accept_ha_samples: one elected replica per cluster, kept in the ring's KV store (ingester.ring.kvstore, key <prefix>ha-tracker/<tenant>/<cluster>); the others' pushes are dropped with 202. See docs/ha-deduplication.md.",
    "distributor.ha_tracker.ha_tracker_update_timeout" Duration "How old the elected replica's last recorded push may get before a distributor records a newer one in the KV store (the KV store is not written on every push).",
    "distributor.ha_tracker.ha_tracker_update_timeout_jitter_max" Duration "Most random time each distributor adds to ha_tracker_update_timeout, so distributors do not all write at once.",
    "distributor.ha_tracker.ha_tracker_failover_timeout" Duration "How long the elected replica may send nothing before another replica of its cluster is elected. Must exceed update timeout + jitter.",
    "ingester.query_stream_batch_size" Int "Series per message when an ingester streams query results.",
    "ingester.metadata_retain_period" Duration "How long an ingester keeps a metric family's metadata after it was last received (Mimir's metadata_retain_period); Prometheus re-sends metadata every metadata_config.send_interval (1m).",
    "ingester.flush_on_shutdown" Bool "On SIGTERM, cut the whole head into blocks and upload them before exiting (POST /ingester/flush does the same on demand).",
    "blocks_storage.backend" String "Object storage for blocks: filesystem or s3 (gcs and azure are not supported in this build).",
    "blocks_storage.filesystem.dir" String "With backend filesystem: the folder that holds the bucket (<tenant>/<ULID>/...).",
    "blocks_storage.s3.endpoint" String "With backend s3: the S3 endpoint (host:port or URL); empty means AWS for the region. Requests are path-style.",
    "blocks_storage.s3.bucket_name" String "With backend s3: the bucket name.",
    "blocks_storage.s3.access_key_id" String "With backend s3: access key ID (SigV4).",
    "blocks_storage.s3.secret_access_key" String "With backend s3: secret access key.",
    "blocks_storage.s3.region" String "With backend s3: region; empty means us-east-1.",
    "blocks_storage.s3.insecure" Bool "With backend s3: use plain HTTP.",
    "blocks_storage.tsdb.dir" String "Ingester's local TSDB: one WAL for every tenant in <dir>/@wal, cut blocks in <dir>/<tenant>/<ULID>. Keep it on a persistent volume.",
    "blocks_storage.tsdb.wal_enabled" Bool "Write each tenant's pushes to a WAL before acknowledging them, and replay it on start. false: a crash loses every sample not yet cut into a block (benchmarks, throw-away setups).",
    "blocks_storage.tsdb.wal_fsync" String "When a push counts as durable: always (fsync before acknowledging; concurrent pushes share fsyncs), batch (wait up to wal_fsync_max_delay to share an fsync), never (written to the OS only: survives a process crash, not a machine crash).",
    "blocks_storage.tsdb.wal_fsync_max_delay" Duration "With wal_fsync batch: longest wait to gather writes into one fsync.",
    "blocks_storage.tsdb.block_ranges_period" Duration "Time range of the blocks cut from the head; a range is cut once the head spans 1.5 times it.",
    "blocks_storage.tsdb.retention_period" Duration "How long a block is kept on the ingester's disk after it was shipped.",
    "blocks_storage.tsdb.head_compaction_interval" Duration "How often each head is checked for a block to cut.",
    "blocks_storage.tsdb.head_compaction_idle_timeout" Duration "A head that took no push for this long is cut into blocks whole, so an idle tenant's data reaches object storage (0 disables).",
    "blocks_storage.tsdb.close_idle_tsdb_timeout" Duration "A tenant that took no push for this long, with an empty head and every block shipped, is closed: its head freed and its local directory removed until its next push. Set it at least as long as querier.query_ingesters_within, or queries of the recent past miss the closed tenant's data (0 disables, the default).",
    "blocks_storage.tsdb.ship_interval" Duration "How often new blocks are uploaded; failed uploads are retried with backoff (1 s doubling up to 1 min).",
    "blocks_storage.bucket_store.sync_dir" String "Store-gateway: local folder for each block's index-header and block.json (<sync_dir>/<tenant>/<ULID>/), so a restart opens its blocks without fetching them. Rebuilt from the bucket when lost.",
    "blocks_storage.bucket_store.sync_interval" Duration "Store-gateway: how often the bucket is scanned for new and deleted blocks (also right after the store-gateway ring changes members). Querier: how often it re-reads a tenant's blocks to check that each was answered; blocks uploaded less than three intervals ago are read but not required.",
    "blocks_storage.bucket_store.ignore_deletion_mark_delay" Duration "Store-gateway: blocks marked for deletion longer ago than this are no longer served (queriers de-duplicate them against the compacted block meanwhile). Keep it below compactor.deletion_delay.",
    "blocks_storage.bucket_store.postings_cache_max_bytes" Int "Store-gateway: byte budget of the in-memory LRU cache of postings lists. 0 disables it.",
    "blocks_storage.bucket_store.series_cache_max_bytes" Int "Store-gateway: byte budget of the in-memory LRU cache of series entries. 0 disables it (and reading series ahead).",
    "blocks_storage.bucket_store.chunks_cache_max_bytes" Int "Store-gateway: byte budget of the in-memory LRU cache of chunks. 0 disables it (and reading chunks ahead).",
    "blocks_storage.bucket_store.block_sync_concurrency" Int "Store-gateway: blocks loaded (index-header built) at once during a sync.",
    "store_gateway.sharding_ring.replication_factor" Int "Store-gateways that load each block. The ring lives in ingester.ring.kvstore under <prefix>rings/store-gateway; instance ID and address are the process's.",
    "store_gateway.sharding_ring.num_tokens" Int "Tokens each store-gateway owns in the store-gateway ring.",
    "store_gateway.sharding_ring.heartbeat_period" Duration "How often a store-gateway refreshes its heartbeat in the ring.",
    "store_gateway.sharding_ring.heartbeat_timeout" Duration "A store-gateway whose heartbeat is older than this is not queried. 0: never.",
    "ingester.ring.kvstore.store" String "Where the ring lives: inmemory (this process only) or etcd (shared by a cluster).",
    "ingester.ring.kvstore.prefix" String "Key prefix of the ring in the KV store; the ring key is <prefix>rings/ingester.",
    "ingester.ring.kvstore.etcd.endpoints" List "etcd endpoints (host:port or http://host:port), comma-separated as a flag.",
    "ingester.ring.kvstore.etcd.dial_timeout" Duration "Timeout of connecting to etcd and of each etcd request.",
    "ingester.ring.kvstore.etcd.max_retries" Int "Compare-and-swap attempts before a ring update gives up.",
    "ingester.ring.heartbeat_period" Duration "How often an ingester refreshes its heartbeat in the ring.",
    "ingester.ring.heartbeat_timeout" Duration "An ingester whose heartbeat is older than this is unhealthy and skipped. 0: never.",
    "ingester.ring.replication_factor" Int "Ingesters each series is written to; a push needs a quorum (RF/2+1). Forced to 1 with the inmemory store.",
    "ingester.ring.zone_awareness_enabled" Bool "Place the replicas of a series in distinct zones (instance_availability_zone).",
    "ingester.ring.num_tokens" Int "Tokens each ingester owns in the ring.",
    "ingester.ring.instance_id" String "This ingester's ID in the ring; empty means <hostname>-<grpc port>. Must be stable across restarts.",
    "ingester.ring.instance_addr" String "gRPC address others reach this ingester at; empty means server.grpc_listen_address:grpc_listen_port.",
    "ingester.ring.instance_availability_zone" String "This ingester's zone, for zone-aware replication.",
    "ingester.ring.tokens_file_path" String "File to keep this ingester's tokens in, so a restart reuses them even after it left the ring. Empty: none.",
    "ingester.ring.unregister_on_shutdown" Bool "Remove this ingester from the ring on shutdown (false keeps its tokens for a quick restart).",
    "ingester.ring.auto_forget_unhealthy_periods" Int "Remove ingesters unhealthy for this many heartbeat timeouts from the ring; 0 never.",
    "querier.lookback_delta" Duration "How far back an instant selector looks for a series' latest sample (Prometheus's --query.lookback-delta).",
    "querier.timeout" Duration "Longest a query may run (the request's timeout parameter can only shorten it); beyond it the query fails with 503.",
    "querier.max_samples" Int "Most samples one query may hold in memory at once; beyond it the query fails with 422.",
    "querier.max_concurrent" Int "Most queries evaluated at once by one querier; others wait. 0 means no limit.",
    "querier.ingester_client.timeout" Duration "Longest one query call to one ingester may take (well below querier.timeout: a read does not need every ingester, see minimize_ingester_requests).",
    "querier.minimize_ingester_requests" Bool "Ask only as many ingesters as a read needs (all healthy ones but the ring's tolerance: two of three with RF=3) and the others only when one of those fails or has not answered after the hedging delay (Mimir's -querier.minimize-ingester-requests). Off: every healthy ingester at once. Either way a read returns once that many answered, so a hung ingester does not stall it.",
    "querier.minimize_ingester_requests_hedging_delay" Duration "With minimize_ingester_requests: how long the first ingesters asked have before the others are asked too (Mimir's -querier.minimize-ingester-requests-hedging-delay).",
    "querier.ingester_client.connect_timeout" Duration "Longest connecting to an ingester may take.",
    "querier.ingester_client.max_recv_message_size" Int "Largest gRPC message accepted from an ingester, in bytes.",
    "querier.query_ingesters_within" Duration "Ingesters are asked only for the most recent this long of a query's range (their heads hold no older data once cut into blocks). 0: always the whole range.",
    "querier.query_store_after" Duration "Store-gateways are asked only for data older than this (newer blocks may not be uploaded and synced yet). 0: always the whole range. Must be below query_ingesters_within.",
    "querier.store_gateway_client.timeout" Duration "Longest one query call to one store-gateway may take.",
    "querier.store_gateway_hedging_delay" Duration "How long a store-gateway has to answer for its blocks before their next owner (with store_gateway.sharding_ring.replication_factor > 1) is asked too. 0: the next owner only when one fails.",
    "querier.store_gateway_client.connect_timeout" Duration "Longest connecting to a store-gateway may take.",
    "querier.store_gateway_client.max_recv_message_size" Int "Largest gRPC message accepted from a store-gateway, in bytes.",
    "querier.max_query_expression_size_bytes" Int "Longest query text accepted, in bytes (Mimir's max_query_expression_size_bytes); a longer one is refused with 400 before it is parsed. Also bounds match[] selectors.",
    "querier.max_query_expression_depth" Int "Deepest expression tree accepted: each operator, function call, aggregation, parenthesis, subquery and selector is one level (a chain of 500 '+' is 501 deep). Deeper queries are refused with 400 before they are parsed. At most 1000. See docs/limits.md.",
    "querier.max_query_matchers_per_selector" Int "Most label matchers in one selector of a query; beyond it 400.",
    "querier.max_query_matchers" Int "Most label matchers in one query, all selectors together; beyond it 400.",
    "querier.max_response_size_bytes" Int "Largest answer of the query API (query, query_range, series, labels, label values, format_query), in bytes of JSON; a larger one fails with 422 once the budget is used up.",
    "limits.ingestion_rate" Float "Per-tenant: samples per second a tenant may push; over it a push gets 429. Each distributor applies it on its own (Mimir's local strategy), so N distributors allow N times this.",
    "limits.ingestion_burst_size" Int "Per-tenant: most samples a tenant may push at once (the rate limiter's bucket size); a larger push always gets 429.",
    "limits.max_global_series_per_user" Int "Per-tenant: most in-memory series across all ingesters before replication; each ingester allows its share (limit × replication factor ÷ healthy ingesters). A new series beyond it gets 429. 0: no limit.",
    "limits.max_global_series_per_metric" Int "Per-tenant: most in-memory series of one metric name across all ingesters, divided like max_global_series_per_user. 0: no limit.",
    "limits.max_fetched_series_per_query" Int "Per-tenant: most distinct series one query (or /api/v1/series call) may fetch; beyond it the query fails with 422. 0: no limit.",
    "limits.max_samples_per_query" Int "Per-tenant: most samples one query may hold in memory at once; beyond it the query fails with 422 (Prometheus's query.max-samples). 0: querier.max_samples; otherwise the lower of the two.",
    "limits.query_timeout" Duration "Per-tenant: longest one query may run, fetching included; beyond it the query fails with 503 timeout. 0: querier.timeout; otherwise the lower of the two.",
    "limits.max_total_query_length" Duration "Per-tenant: longest time range (end minus start) of one range query or one remote-read query (Mimir's max_total_query_length); a longer one is refused with 400 naming the limit. 0: no limit.",
    "limits.max_label_name_length" Int "Per-tenant: longest label name accepted, in bytes.",
    "limits.max_label_value_length" Int "Per-tenant: longest label value accepted, in bytes.",
    "limits.max_label_names_per_series" Int "Per-tenant: most labels (metric name included) a series may have.",
    "limits.creation_grace_period" Duration "Per-tenant: how far in the future a sample's timestamp may be.",
    "limits.past_grace_period" Duration "Per-tenant: how far in the past a sample's timestamp may be, against the distributor's clock (Mimir's past_grace_period); older samples are refused with 400 'sample timestamp too old'. 0: no limit here (the ingester still refuses samples older than its head takes: docs/limits.md).",
    "limits.out_of_order_time_window" Duration "Per-tenant: how far behind the newest sample of a tenant's head (on each ingester) a sample older than its series' newest is still stored, out of order (Mimir's and Prometheus's out_of_order_time_window); older ones are refused with 400 'sample timestamp too old'. Late samples behind the blocks the ingester already cut go into blocks of their own at its next cut. 0: off, samples older than their series' newest are refused as out of order. See docs/limits.md.",
    "limits.accept_ha_samples" Bool "Per-tenant: de-duplicate this tenant's HA pairs (needs distributor.ha_tracker.enable_ha_tracker). Pushes whose first series has both HA labels are HA pushes; others are accepted unchanged.",
    "limits.ha_cluster_label" String "Per-tenant: label naming an HA pair (kept on the stored series).",
    "limits.ha_replica_label" String "Per-tenant: label naming the replica within its pair (removed from the stored series).",
    "limits.ha_max_clusters" Int "Per-tenant: most HA clusters tracked; a push from one more gets 400. 0: no limit.",
    "limits.max_metadata_length" Int "Per-tenant: longest metric family name, HELP or UNIT of a remote-write metadata entry, in bytes (Mimir's max_metadata_length); a longer name or unit drops the entry with 400, a longer HELP is truncated.",
    "limits.max_global_metadata_per_user" Int "Per-tenant: most metric families with metadata held across all ingesters, divided like max_global_series_per_user; metadata of further families is dropped (counted in strata_discarded_metadata_total). 0: no limit.",
    "limits.max_global_metadata_per_metric" Int "Per-tenant: most distinct metadata entries (type, help, unit) of one metric family; further ones are dropped (counted). 0: no limit.",
    "limits.max_global_exemplars_per_user" Int "Per-tenant: most exemplars held across all ingesters, divided like max_global_series_per_user; each ingester keeps its share in a circular buffer (the oldest overwritten). 0 (Mimir's default): exemplars are dropped in the distributor.",
    "limits.compactor_blocks_retention_period" Duration "Per-tenant: the compactor marks blocks whose newest sample is older than this for deletion (deleted after compactor.deletion_delay). 0: keep forever.",
    "compactor.block_ranges" String "Compaction levels, comma-separated durations (a YAML list works too): the first is the ingesters' block range (only overlapping replica copies are merged there), each further one the range adjacent blocks are merged up to. Each must be a multiple of the one before.",
    "compactor.data_dir" String "Compactor scratch space: source blocks are downloaded and merged blocks written here; emptied for each tenant's turn.",
    "compactor.compaction_interval" Duration "Time between compaction passes over every tenant; the first pass starts one interval after start-up. POST /compactor/run starts a pass at once.",
    "compactor.deletion_delay" Duration "How long a block marked for deletion (compacted, past retention) stays in the bucket before it is deleted; longer than readers take to see the mark in the bucket index.",
    "compactor.partial_block_deletion_delay" Duration "A block directory without meta.json (an abandoned upload) whose newest object is older than this is deleted. 0: never.",
    "runtime_config.file" String "Runtime config file with per-tenant limit overrides (`overrides: {<tenant>: {<limits keys>}}`, Mimir's format); keys a tenant leaves out take the limits above. Empty: none. Shown at /runtime_config.",
    "runtime_config.period" Duration "How often the runtime config file is re-read; an invalid file is logged and the overrides in force are kept.",
    "tracing.otlp_endpoint" String "OpenTelemetry collector spans are exported to over OTLP/gRPC (http://host:4317). Empty: $OTEL_EXPORTER_OTLP_ENDPOINT, and no tracing when that is unset too. Batching follows the OTEL_BSP_* variables.",
    "tracing.service_name" String "service.name of the exported spans.",
    "tracing.sample_ratio" Float "Fraction of new traces sampled, 0 to 1; spans of a trace started by a caller follow the caller's decision.",
}

/// The config as YAML with every secret replaced by `********`, for `GET /config`.
pub fn masked_yaml(config: &Config) -> String {
    let mut tree = serde_yaml::to_value(config).unwrap_or(Value::Null);
    mask_secrets(&mut tree);
    serde_yaml::to_string(&tree).unwrap_or_default()
}

/// Every setting as its flag name (the dotted YAML key) and its value,
/// secrets masked, for Prometheus's `status/flags`. Lists are written as
/// YAML flow sequences (`[a, b]`), unset values as empty strings.
pub fn flag_values(config: &Config) -> std::collections::BTreeMap<String, String> {
    fn walk(prefix: &str, value: &Value, out: &mut std::collections::BTreeMap<String, String>) {
        match value {
            Value::Mapping(map) => {
                for (key, child) in map {
                    let key = key.as_str().unwrap_or_default();
                    let name = if prefix.is_empty() {
                        key.to_string()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&name, child, out);
                }
            }
            Value::Null => {
                out.insert(prefix.to_string(), String::new());
            }
            Value::String(s) => {
                out.insert(prefix.to_string(), s.clone());
            }
            Value::Bool(_) | Value::Number(_) => {
                let text = serde_yaml::to_string(value).unwrap_or_default();
                out.insert(prefix.to_string(), text.trim().to_string());
            }
            Value::Sequence(items) => {
                let text: Vec<String> = items
                    .iter()
                    .map(|item| {
                        serde_yaml::to_string(item)
                            .unwrap_or_default()
                            .trim()
                            .to_string()
                    })
                    .collect();
                out.insert(prefix.to_string(), format!("[{}]", text.join(", ")));
            }
            Value::Tagged(tagged) => walk(prefix, &tagged.value, out),
        }
    }
    let mut tree = serde_yaml::to_value(config).unwrap_or(Value::Null);
    mask_secrets(&mut tree);
    let mut out = std::collections::BTreeMap::new();
    walk("", &tree, &mut out);
    out
}

/// Masks the values of secret keys. A key is secret when its name says so
/// (`secret`, `password`, `token`, but not a `_file`/`_path` naming where one is
/// kept), so new credentials are masked without a list to keep up to date.
fn mask_secrets(value: &mut Value) {
    let Value::Mapping(map) = value else { return };
    for (key, child) in map.iter_mut() {
        let name = key.as_str().unwrap_or_default().to_ascii_lowercase();
        let secret = ["secret", "password", "token"]
            .iter()
            .any(|s| name.contains(s))
            && !name.ends_with("_file")
            && !name.ends_with("_path");
        if secret && !matches!(child, Value::Mapping(_)) {
            let set = !matches!(child, Value::Null) && child.as_str().is_none_or(|s| !s.is_empty());
            *child = Value::String(if set {
                "********".into()
            } else {
                String::new()
            });
        } else {
            mask_secrets(child);
        }
    }
}

/// Parses YAML text into a tree; the top level must be a mapping (or empty).
/// Errors are about `config.file` and name `path`.
pub fn parse_yaml_tree(text: &str, path: &str) -> Result<Value, ConfigError> {
    let bad = |reason: String| ConfigError::new("config.file", format!("{path}: {reason}"));
    strata_model::check_bracket_nesting(text, strata_model::MAX_YAML_NESTING)
        .map_err(|e| bad(e.to_string()))?;
    let value: Value = serde_yaml::from_str(text).map_err(|e| bad(e.to_string()))?;
    match value {
        Value::Null => Ok(Value::Mapping(Default::default())),
        Value::Mapping(_) => Ok(value),
        _ => Err(bad("the top level must be a mapping of sections".into())),
    }
}

/// Sets the value of a flag at its dotted path in the tree, typed by the field's kind.
pub fn set_path(tree: &mut Value, field: &FieldDoc, raw: &str) -> Result<(), ConfigError> {
    let bad =
        |reason: &str| ConfigError::new(field.path, format!("invalid value {raw:?}: {reason}"));
    let value = match field.kind {
        FieldKind::String => Value::String(raw.to_string()),
        FieldKind::Int => Value::Number(
            raw.parse::<i64>()
                .map_err(|_| bad("expected an integer"))?
                .into(),
        ),
        FieldKind::Float => Value::Number(
            raw.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad("expected a number"))?
                .into(),
        ),
        FieldKind::Bool => Value::Bool(
            raw.parse::<bool>()
                .map_err(|_| bad("expected true or false"))?,
        ),
        FieldKind::Duration => {
            strata_model::parse_duration(raw).map_err(|e| bad(e.reason))?;
            Value::String(raw.to_string())
        }
        FieldKind::List => Value::Sequence(
            raw.split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| Value::String(v.to_string()))
                .collect(),
        ),
    };
    let mut node = tree;
    let parts: Vec<&str> = field.path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let Value::Mapping(map) = node else {
            return Err(bad(
                "the config file has a non-mapping value above this key",
            ));
        };
        let key = Value::String(part.to_string());
        if i + 1 == parts.len() {
            map.insert(key, value);
            return Ok(());
        }
        node = map
            .entry(key)
            .or_insert_with(|| Value::Mapping(Default::default()));
    }
    Ok(())
}

/// Replaces `${VAR}` and `${VAR:default}` with environment values.
pub fn expand_env(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let spec = &after[..end];
                let (name, default) = spec.split_once(':').unwrap_or((spec, ""));
                out.push_str(&std::env::var(name).unwrap_or_else(|_| default.to_string()));
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
/// docs/configuration.md, generated from [`FIELD_DOCS`] and the defaults.
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the code (`services/strata/src/config.rs`); a test fails when this file is stale \
         (regenerate with `STRATA_UPDATE_DOCS=1 cargo test -p strata config_reference`).\n\n\
         Strata reads one YAML file (`-config.file`); every key can also be set by a flag named by its \
         dotted path, with one or two leading dashes and `_` or `-` between words \
         (`-server.http_listen_port=9009`, `--server.http-listen-port 9009`). Flags win over the file; \
         unknown keys are an error that names the key. `-config.verify` checks a config and exits: it runs every check \
         the modules of `-target` make of their settings at start, naming the key of the first that fails, but \
         does not read the files the config names (`auth.tenants_file`, `runtime_config.file`), which the start \
         reads and refuses when invalid, and which may change without a restart. \
         `-config.expand-env` replaces `${VAR}` and `${VAR:default}` in the file.\n\n\
         Durations use Prometheus's syntax (`30s`, `1h30m`, `2w`).\n\n\
         | key / flag | type | default | description |\n|---|---|---|---|\n",
    );
    for f in FIELD_DOCS {
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} |\n",
            f.path,
            f.kind.value_name(),
            f.default_text(),
            f.help
        ));
    }
    out
}

/// The ring settings with the defaults that depend on the rest of the config
/// filled in: instance ID and address from the host and gRPC port, and a
/// replication factor of 1 when the ring is in memory (only this process can
/// ever be in it).
pub(crate) fn effective_ring_config(config: &Config) -> strata_ring::RingConfig {
    let mut ring = config.ingester.ring.clone();
    let port = config.server.grpc_listen_port;
    if ring.instance_id.is_empty() {
        ring.instance_id = format!("{}-{port}", hostname());
    }
    if ring.instance_addr.is_empty() {
        let host = match config.server.grpc_listen_address.as_str() {
            "" | "0.0.0.0" | "::" | "[::]" => hostname(),
            other => other.to_string(),
        };
        ring.instance_addr = format!("{host}:{port}");
    }
    if ring.kvstore.store == strata_ring::KvStoreKind::Inmemory && ring.replication_factor > 1 {
        tracing::info!(
            configured = ring.replication_factor,
            "the ingester ring is in memory (one process): using replication factor 1"
        );
        ring.replication_factor = 1;
    }
    ring
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The `runtime_config` section of the config file.
///
/// Its keys are described in one place, the binary's `FIELD_DOCS`, which
/// feeds `-help` and docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfigSettings {
    pub file: String,
    pub period: strata_model::ConfigDuration,
}

impl Default for RuntimeConfigSettings {
    fn default() -> Self {
        Self {
            file: String::new(),
            period: strata_model::ConfigDuration::from_secs(10),
        }
    }
}

impl RuntimeConfigSettings {
    /// Checks the values that parse but make no sense. The file is not read
    /// (the start reads it): like Mimir's `-config.verify`, a check of the
    /// config does not depend on the overrides file of the moment.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.period.0 == std::time::Duration::ZERO {
            return Err(ConfigError::new(
                "runtime_config.period",
                "must be greater than 0s",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hostile YAML in a config file: deep nesting and alias bombs are errors
    /// naming the file, not a stack overflow or gigabytes of memory.
    #[test]
    fn hostile_yaml_is_an_error() {
        let deep_flow = format!("a: {}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let deep_block: String = (0..1_000)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect();
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (name, prev) in ["b", "c", "d", "e", "f", "g", "h", "i", "j"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f", "g", "h", "i"])
        {
            bomb.push_str(&format!(
                "{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        for (what, text) in [
            ("flow", deep_flow),
            ("block", deep_block),
            ("aliases", bomb),
        ] {
            match parse_yaml_tree(&text, "hostile.yaml") {
                Err(ConfigError { key, reason }) => {
                    assert_eq!(key, "config.file");
                    assert!(reason.starts_with("hostile.yaml: "), "{what}: {reason}");
                }
                other => panic!("{what}: expected a YAML error, got {other:?}"),
            }
        }
    }

    fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Mapping(m) => {
                for (k, v) in m {
                    let k = k.as_str().unwrap_or_default();
                    let p = if prefix.is_empty() {
                        k.to_string()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&p, v, out);
                }
            }
            other => out.push((prefix.to_string(), other.clone())),
        }
    }

    #[test]
    fn every_key_is_documented_with_its_type() {
        let mut all = Vec::new();
        leaves(
            "",
            &serde_yaml::to_value(Config::default()).unwrap(),
            &mut all,
        );
        for (path, value) in &all {
            let doc = FIELD_DOCS
                .iter()
                .find(|f| f.path == path)
                .unwrap_or_else(|| panic!("config key {path} has no entry in FIELD_DOCS"));
            let ok = match (doc.kind, value) {
                (FieldKind::String, Value::String(_)) => true,
                (FieldKind::Duration, Value::String(s)) => strata_model::parse_duration(s).is_ok(),
                (FieldKind::Int, Value::Number(n)) => n.is_i64() || n.is_u64(),
                (FieldKind::Bool, Value::Bool(_)) => true,
                (FieldKind::List, Value::Sequence(_)) => true,
                (FieldKind::Float, Value::Number(_)) => true,
                // Optional settings (unset by default).
                (FieldKind::String, Value::Null) => true,
                _ => false,
            };
            assert!(
                ok,
                "{path}: documented as {:?} but the default is {value:?}",
                doc.kind
            );
        }
        for f in FIELD_DOCS {
            assert!(
                all.iter().any(|(p, _)| p == f.path),
                "FIELD_DOCS names {} which is not a config key",
                f.path
            );
        }
    }

    #[test]
    fn config_reference_is_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
        let want = reference_markdown();
        if std::env::var_os("STRATA_UPDATE_DOCS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(have == want, "docs/configuration.md is stale: run STRATA_UPDATE_DOCS=1 cargo test -p strata config_reference");
    }

    #[test]
    fn defaults_validate_and_round_trip() {
        let tree = serde_yaml::to_value(Config::default()).unwrap();
        assert_eq!(Config::from_tree(tree).unwrap(), Config::default());
    }

    /// The config in `yaml` (read as a config file is) with `-target`.
    fn load(target: &str, yaml: &str) -> Result<Config, ConfigError> {
        let mut tree = parse_yaml_tree(yaml, "test.yaml")?;
        if let Value::Mapping(map) = &mut tree {
            map.insert("target".into(), target.into());
        }
        Config::from_tree(tree)
    }

    /// The key `-config.verify` names for this config and target.
    fn rejected(target: &str, yaml: &str) -> String {
        match load(target, yaml) {
            Err(e) => {
                assert!(!e.reason.is_empty(), "{e:?}");
                e.key
            }
            Ok(_) => panic!("-target={target} accepted:\n{yaml}"),
        }
    }

    fn accepted(target: &str, yaml: &str) {
        if let Err(e) = load(target, yaml) {
            panic!("-target={target} rejected ({e}):\n{yaml}");
        }
    }

    const ETCD: &str = "ingester:\n  ring:\n    kvstore:\n      store: etcd\n      etcd:\n        endpoints: [etcd:2379]\n";

    #[test]
    fn target_is_parsed_into_modules() {
        assert_eq!(rejected("ingester,rulr", ""), "target");
        let err = load("rulr", "").unwrap_err();
        assert!(err.reason.contains("valid targets are all,"), "{err}");
        let config = load("querier, compactor", "").unwrap();
        assert_eq!(
            config.target.modules(),
            [Module::Querier, Module::Compactor]
        );
        assert_eq!(config.target.to_string(), "querier, compactor");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load("all", "server:\n  http_listen_prot: 1\n").unwrap_err();
        assert_eq!(err.key, "server.http_listen_prot");
        assert!(err.reason.starts_with("unknown field"), "{err}");
        let err = load("all", "severs: {}\n").unwrap_err();
        assert_eq!(err.key, "severs");
    }

    /// The server section: what `strata_telemetry::init` and the servers'
    /// socket addresses refuse at start.
    #[test]
    fn server_section() {
        assert_eq!(
            rejected("all", "server:\n  log_level: loud\n"),
            "server.log_level"
        );
        assert_eq!(
            rejected("all", "server:\n  log_format: xml\n"),
            "server.log_format"
        );
        assert_eq!(
            rejected(
                "querier",
                "server:\n  http_listen_address: 'no such host'\n"
            ),
            "server.http_listen_address"
        );
        let grpc = "server:\n  grpc_listen_address: localhost\n";
        assert_eq!(rejected("ingester", grpc), "server.grpc_listen_address");
        assert_eq!(
            rejected("store-gateway", grpc),
            "server.grpc_listen_address"
        );
        // Without a module that serves gRPC there is no gRPC server.
        accepted("distributor,querier,compactor", grpc);
    }

    /// `strata_telemetry::TracingConfig::validate`, run by `init` at start.
    #[test]
    fn tracing_section() {
        assert_eq!(
            rejected("all", "tracing:\n  sample_ratio: 1.5\n"),
            "tracing.sample_ratio"
        );
        assert_eq!(
            rejected("all", "tracing:\n  service_name: ' '\n"),
            "tracing.service_name"
        );
    }

    #[test]
    fn limits_section() {
        assert_eq!(
            rejected("distributor", "limits:\n  ingestion_rate: -1\n"),
            "limits.ingestion_rate"
        );
    }

    #[test]
    fn runtime_config_section() {
        assert_eq!(
            rejected("all", "runtime_config:\n  period: 0s\n"),
            "runtime_config.period"
        );
        // The file itself is read at start, not by -config.verify.
        accepted(
            "all",
            "runtime_config:\n  file: /nonexistent/overrides.yaml\n",
        );
    }

    /// What `strata_auth::Authenticator::new` refuses before it reads the
    /// tenants file.
    #[test]
    fn auth_section() {
        assert_eq!(
            rejected("all", "auth:\n  enabled: true\n"),
            "auth.tenants_file"
        );
        assert_eq!(
            rejected(
                "all",
                "multitenancy_enabled: false\nauth:\n  enabled: true\n  tenants_file: t.yaml\n"
            ),
            "auth.enabled"
        );
    }

    /// `RingConfig::validate` (every process reads the ingester ring) and
    /// `validate_lifecycler` (an ingester joins it), on the ring settings the
    /// start uses (instance ID and address filled in).
    #[test]
    fn ingester_ring_section() {
        let no_endpoints = "ingester:\n  ring:\n    kvstore:\n      store: etcd\n";
        for target in ["ingester", "querier", "distributor", "compactor"] {
            assert_eq!(
                rejected(target, no_endpoints),
                "ingester.ring.kvstore.etcd.endpoints"
            );
        }
        let no_tokens = "ingester:\n  ring:\n    num_tokens: 0\n";
        assert_eq!(rejected("ingester", no_tokens), "ingester.ring.num_tokens");
        accepted("querier", no_tokens);
        let no_zone = format!("{ETCD}    zone_awareness_enabled: true\n");
        assert_eq!(
            rejected("ingester", &no_zone),
            "ingester.ring.instance_availability_zone"
        );
        // Filled in from the host and the gRPC port, as at start.
        accepted("ingester", "ingester:\n  ring:\n    instance_id: ''\n");
    }

    /// `BlocksStorageConfig::validate`, run by `bucket()` in the ingester,
    /// store-gateway and compactor.
    #[test]
    fn blocks_storage_section() {
        assert_eq!(
            rejected("all", "blocks_storage:\n  backend: gcs\n"),
            "blocks_storage.backend"
        );
        assert_eq!(
            rejected(
                "ingester",
                "blocks_storage:\n  tsdb:\n    wal_fsync: sometimes\n"
            ),
            "blocks_storage.tsdb.wal_fsync"
        );
        assert_eq!(
            rejected("all", "blocks_storage:\n  backend: s3\n"),
            "blocks_storage.s3.bucket_name"
        );
    }

    /// `QuerierConfig::validate`, run by `Querier::new`: the case of issue 13,
    /// which `-config.verify` used to accept.
    #[test]
    fn querier_section() {
        let gap = "querier:\n  query_ingesters_within: 1h\n  query_store_after: 2h\n";
        assert_eq!(rejected("all", gap), "querier.query_store_after");
        assert_eq!(rejected("querier", gap), "querier.query_store_after");
        accepted("ingester", gap);
        assert_eq!(
            rejected("querier", "querier:\n  timeout: 0s\n"),
            "querier.timeout"
        );
        assert_eq!(
            rejected("querier", "querier:\n  max_query_expression_depth: 5000\n"),
            "querier.max_query_expression_depth"
        );
    }

    /// `StoreGatewayConfig::validate`: the store-gateway ring, joined by a
    /// store-gateway and read by a querier.
    #[test]
    fn store_gateway_section() {
        let no_tokens = "store_gateway:\n  sharding_ring:\n    num_tokens: 0\n";
        assert_eq!(
            rejected("store-gateway", no_tokens),
            "store_gateway.sharding_ring.num_tokens"
        );
        accepted("querier", no_tokens);
        let no_replicas =
            format!("{ETCD}store_gateway:\n  sharding_ring:\n    replication_factor: 0\n");
        assert_eq!(
            rejected("querier", &no_replicas),
            "store_gateway.sharding_ring.replication_factor"
        );
        // A querier alone with an in-memory ring reads no store-gateway.
        accepted(
            "querier",
            "store_gateway:\n  sharding_ring:\n    replication_factor: 0\n",
        );
        let no_zone = "ingester:\n  ring:\n    zone_awareness_enabled: true\n";
        assert_eq!(
            rejected("store-gateway", no_zone),
            "ingester.ring.instance_availability_zone"
        );
    }

    /// `CompactorConfig::validate`, run by `Compactor::new`, and the
    /// compactor ring a compactor joins when the ring is shared.
    #[test]
    fn compactor_section() {
        assert_eq!(
            rejected("compactor", "compactor:\n  block_ranges: 2h,3h\n"),
            "compactor.block_ranges"
        );
        assert_eq!(
            rejected("compactor", "compactor:\n  compaction_interval: 0s\n"),
            "compactor.compaction_interval"
        );
        let no_tokens = format!("{ETCD}    num_tokens: 0\n");
        assert_eq!(
            rejected("compactor", &no_tokens),
            "ingester.ring.num_tokens"
        );
        accepted("distributor", &no_tokens);
    }

    #[test]
    fn secrets_are_masked_and_nothing_else() {
        let mut tree: Value = serde_yaml::from_str(
            "s3:\n  secret_access_key: hunter2\n  access_key_id: AKIA\nauth:\n  tenants_file: /etc/t.yaml\n  password: ''\n",
        )
        .unwrap();
        mask_secrets(&mut tree);
        let text = serde_yaml::to_string(&tree).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("secret_access_key: '********'"), "{text}");
        assert!(text.contains("access_key_id: AKIA"), "{text}");
        assert!(text.contains("tenants_file: /etc/t.yaml"), "{text}");
        assert!(text.contains("password: ''"), "{text}");
        assert!(masked_yaml(&Config::default()).contains("http_listen_port: 9009"));
        let flags = flag_values(&Config::default());
        assert_eq!(flags["server.http_listen_port"], "9009");
        assert_eq!(flags["target"], "all");
    }

    #[test]
    fn expand_env_with_defaults() {
        std::env::set_var("STRATA_TEST_X", "7");
        assert_eq!(
            expand_env("a: ${STRATA_TEST_X}\nb: ${STRATA_TEST_NOPE:5}"),
            "a: 7\nb: 5"
        );
    }
}
