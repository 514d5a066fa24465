//! `ao-cu serve`: a complete local AO node (Messenger, Scheduler and Compute Unit) on one port.
//!
//! With no arguments it keeps its data in `./ao-cu-data`, listens on port 6363 and generates its Arweave
//! wallet into `<data-dir>/wallet.json` on first run. Flags have environment variables; where the reference
//! CU has a variable with the same meaning its name is used (`PORT`, `WALLET_FILE`,
//! `WASM_EVALUATION_MAX_WORKERS`, `PROCESS_MEMORY_CACHE_MAX_SIZE`, `ENABLE_METRICS_ENDPOINT`,
//! `RATE_LIMIT_WINDOW`, `RATE_LIMIT_MAX_REQUESTS`, `DRY_RUN_RESULT_MAX_AGE`, `PROCESS_WASM_COMPUTE_MAX_LIMIT`,
//! `PROCESS_WASM_MEMORY_MAX_LIMIT`). SIGTERM or SIGINT stops
//! accepting connections, lets in-flight requests finish, then shuts the node down (checkpointing).
//!
//! Attestation (`docs/attestation.md`): the node's ed25519 key lives in `<data-dir>/node-key.ed25519`
//! (created on first run, 0600). It signs every served result (RFC 9421) and `GET /` publishes it with the
//! node configuration digest; `GET /~snp@1.0/report?nonce=HEX` binds both into SEV-SNP evidence inside an
//! SNP guest (certificates the host did not supply come from AMD's KDS, cached in `<data-dir>/certs`) and
//! answers 503 "no TEE" elsewhere.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use cu_ans104::Wallet;
use cu_attest::kds::{AMD_KDS_URL, CertCache, KdsFetcher};
use cu_attest::{Attestor, NodeKey};
use cu_http::{HttpConfig, RateLimit};
use cu_node::{Node, NodeConfig};

/// `ao-cu serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory (SQLite store, checkpoints, generated wallet).
    #[arg(long, env = "AO_CU_DATA_DIR", default_value = "./ao-cu-data")]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "AO_CU_HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on (0 = any free port; the chosen one is logged and printed).
    #[arg(long, env = "PORT", default_value_t = 6363)]
    pub port: u16,
    /// Arweave JWK of the node; default: `<data-dir>/wallet.json`, generated on first run.
    #[arg(long, env = "WALLET_FILE")]
    pub wallet_file: Option<PathBuf>,
    /// The URL other units reach this node at (its Scheduler-Location record); default
    /// `http://localhost:<port>`.
    #[arg(long, env = "AO_CU_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Evaluation worker threads (shards); default: one per core.
    #[arg(long, env = "WASM_EVALUATION_MAX_WORKERS")]
    pub workers: Option<usize>,
    /// Threads for dry-runs; default: half the cores (at least 1).
    #[arg(long, env = "AO_CU_DRY_RUN_WORKERS")]
    pub dry_run_workers: Option<usize>,
    /// Do not pin worker threads to cores.
    #[arg(long, env = "AO_CU_NO_PIN_CORES")]
    pub no_pin_cores: bool,
    /// Resident process memory budget in bytes (`_` separators allowed); default 4 GiB.
    #[arg(long, env = "PROCESS_MEMORY_CACHE_MAX_SIZE", value_parser = parse_u64)]
    pub memory_budget: Option<u64>,
    /// Checkpoint a process after this many evaluated messages (0 = never on count).
    #[arg(long, env = "AO_CU_CHECKPOINT_EVERY_MESSAGES")]
    pub checkpoint_every_messages: Option<u64>,
    /// Checkpoint a process after this much evaluation time, in ms (0 = never on time).
    #[arg(long, env = "EAGER_CHECKPOINT_EVAL_TIME_THRESHOLD", value_parser = parse_u64)]
    pub checkpoint_every_eval_ms: Option<u64>,
    /// Checkpoint a process after this much gas (0 = never on gas).
    #[arg(long, env = "EAGER_CHECKPOINT_ACCUMULATED_GAS_THRESHOLD", value_parser = parse_u64)]
    pub checkpoint_every_gas: Option<u64>,
    /// fsync every commit (power-cut safety; slower).
    #[arg(long, env = "AO_CU_FSYNC")]
    pub fsync: bool,
    /// Keep the store's tables in this PostgreSQL database (`postgres://user:password@host:port/dbname`,
    /// the reference CU's `DB_URL`) instead of SQLite in the data directory; checkpoint files stay in the
    /// data directory.
    #[arg(long, env = "DB_URL", value_parser = parse_db_url)]
    pub db_url: Option<cu_store::Database>,
    /// Share the database with standby nodes: take the store lease under this name before serving (a
    /// standby waits here until the active node's lease is released or expires), renew it, and stop
    /// (exit 3) if another node takes it over; every write is fenced by the lease's token. Needs
    /// `--db-url` and, for checkpoints a standby can read, `--checkpoint-s3-*`.
    #[arg(long, env = "AO_CU_STORE_LEASE", requires = "db_url")]
    pub store_lease: Option<String>,
    /// How long the store lease lasts without renewal (ms): a crashed node's standby takes over after it.
    #[arg(long, env = "AO_CU_STORE_LEASE_TTL", default_value = "10000", value_parser = parse_u64)]
    pub store_lease_ttl_ms: u64,
    /// Join a cluster of nodes on the shared `--db-url` database under this name: every process is owned by
    /// one node at a time through a lease with a fencing token, only its owner schedules and evaluates it,
    /// and requests that land on another node are forwarded to the owner (docs/deploy.md). All nodes of a
    /// cluster share the wallet (`--wallet-file`) and the checkpoint bucket (`--checkpoint-s3-*`).
    #[arg(
        long,
        env = "AO_CU_CLUSTER_NODE",
        requires = "db_url",
        conflicts_with = "store_lease"
    )]
    pub cluster_node: Option<String>,
    /// The URL the other nodes of the cluster reach this node at (default: the listen address, or
    /// `http://localhost:PORT` when listening on all interfaces).
    #[arg(long, env = "AO_CU_CLUSTER_URL", requires = "cluster_node")]
    pub cluster_url: Option<String>,
    /// How long a process lease lasts without renewal (ms): a crashed node's processes move to the others
    /// after it.
    #[arg(long, env = "AO_CU_PROCESS_LEASE_TTL", default_value = "10000", value_parser = parse_u64)]
    pub process_lease_ttl_ms: u64,
    /// Keep checkpoint blobs in an S3-compatible object store at this URL (e.g. `http://127.0.0.1:3900`)
    /// instead of files in the data directory; needs `--checkpoint-s3-bucket` and credentials.
    #[arg(long, env = "AO_CU_CHECKPOINT_S3_ENDPOINT", requires = "checkpoint_s3_bucket")]
    pub checkpoint_s3_endpoint: Option<String>,
    /// The bucket of checkpoint blobs (it must exist).
    #[arg(long, env = "AO_CU_CHECKPOINT_S3_BUCKET", requires = "checkpoint_s3_endpoint")]
    pub checkpoint_s3_bucket: Option<String>,
    /// The bucket's signing region.
    #[arg(long, env = "AO_CU_CHECKPOINT_S3_REGION", default_value = "us-east-1")]
    pub checkpoint_s3_region: String,
    /// A key prefix for this node's objects (several stores in one bucket), e.g. `node-a/`.
    #[arg(long, env = "AO_CU_CHECKPOINT_S3_PREFIX", default_value = "")]
    pub checkpoint_s3_prefix: String,
    /// The access key id of the bucket.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", default_value = "", hide_env_values = true)]
    pub checkpoint_s3_access_key: String,
    /// The secret key of the bucket.
    #[arg(
        long,
        env = "AWS_SECRET_ACCESS_KEY",
        default_value = "",
        hide_env_values = true
    )]
    pub checkpoint_s3_secret_key: String,
    /// Directory of the compiled-module (AOT) cache; default `<data-dir>/aot`.
    #[arg(long, env = "AO_CU_AOT_CACHE")]
    pub aot_cache: Option<PathBuf>,
    /// Bytes of language models (`ao_tensor.model_*`, loaded by data item id) the node keeps converted
    /// for its processes; they count against the memory budget too.
    #[arg(long, env = "AO_CU_MODEL_MEMORY", default_value = "2147483648", value_parser = parse_u64)]
    pub model_memory: u64,
    /// Largest request body in bytes (a Type=Module upload carries the whole wasm).
    #[arg(long, env = "AO_CU_BODY_LIMIT", default_value = "67108864", value_parser = parse_u64)]
    pub body_limit: u64,
    /// Serve `GET /metrics` (`true`/`false`).
    #[arg(long, env = "ENABLE_METRICS_ENDPOINT", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub metrics: bool,
    /// Generate cron messages for processes with `Cron-Interval` tags (`true`/`false`).
    #[arg(long, env = "AO_CU_CRON", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub cron: bool,
    /// Dry-run requests allowed per client IP and window (0 = no limit, the default).
    #[arg(long, env = "RATE_LIMIT_MAX_REQUESTS", default_value_t = 0)]
    pub dry_run_rate_limit: u32,
    /// Dry-run rate limit window in ms.
    #[arg(long, env = "RATE_LIMIT_WINDOW", default_value = "60000", value_parser = parse_u64)]
    pub dry_run_rate_window_ms: u64,
    /// How long a dry-run answer is reused for the same process, position and body, in ms (0 = never).
    #[arg(long, env = "DRY_RUN_RESULT_MAX_AGE", default_value = "60000", value_parser = parse_u64)]
    pub dry_run_cache_ms: u64,

    // --- Roles and network mode.
    /// Roles served: `all` (the embedded MU + SU + CU + gateway on one store) or a comma-separated list of
    /// `mu`, `su`, `cu`, `gateway`. A network CU is `--roles cu --gateway URL`.
    #[arg(long, env = "AO_CU_ROLES", default_value = "all")]
    pub roles: cu_http::Roles,
    /// The gateway of the AO network (`GATEWAY_URL`): with it, processes this node does not schedule are
    /// read from their SU (located through the gateway's Scheduler-Location records) and computed here.
    #[arg(long, env = "GATEWAY_URL")]
    pub gateway: Option<String>,
    /// GraphQL endpoint (default `{gateway}/graphql`).
    #[arg(long, env = "GRAPHQL_URL")]
    pub graphql_url: Option<String>,
    /// Where `/raw/:id` data is read (default the gateway).
    #[arg(long, env = "ARWEAVE_URL")]
    pub arweave_url: Option<String>,
    /// One SU for every remote process, instead of locating each through the gateway.
    #[arg(long, env = "AO_CU_SU_URL")]
    pub su_url: Option<String>,
    /// Background catch-up interval of remote processes, in ms (0: only when read).
    #[arg(long, env = "AO_CU_UPSTREAM_POLL", default_value = "1000", value_parser = parse_u64)]
    pub upstream_poll_ms: u64,
    /// Timeout of one upstream request, in ms.
    #[arg(long, env = "AO_CU_UPSTREAM_TIMEOUT", default_value = "30000", value_parser = parse_u64)]
    pub upstream_timeout_ms: u64,
    /// Retries of a failed upstream request (backoff from 500 ms, doubling).
    #[arg(long, env = "AO_CU_UPSTREAM_RETRIES", default_value_t = 5)]
    pub upstream_retries: u32,
    /// Slots per SU page read.
    #[arg(long, env = "LOAD_MESSAGES_PAGE_SIZE", default_value_t = 1000)]
    pub page_size: usize,

    // --- Checkpoints on Arweave (the reference CU's format).
    /// Upload process checkpoints as signed data items through a bundler: `false` turns uploads on, as
    /// the reference's variable does (off by default).
    #[arg(long, env = "DISABLE_PROCESS_CHECKPOINT_CREATION", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub disable_process_checkpoint_creation: bool,
    /// The bundler checkpoints are posted to (`{url}/tx/arweave`); default this node itself when it
    /// serves the gateway role.
    #[arg(long, env = "UPLOADER_URL")]
    pub uploader_url: Option<String>,
    /// At most one checkpoint upload per process per this many ms.
    #[arg(long, env = "PROCESS_CHECKPOINT_CREATION_THROTTLE", default_value = "1800000", value_parser = parse_u64)]
    pub process_checkpoint_creation_throttle_ms: u64,
    /// A process is due for an upload after this many evaluated messages since its last one.
    #[arg(long, env = "AO_CU_CHECKPOINT_UPLOAD_EVERY", default_value = "1000", value_parser = parse_u64)]
    pub checkpoint_upload_every: u64,
    /// How often the uploader looks for due processes, in ms.
    #[arg(long, env = "AO_CU_CHECKPOINT_UPLOAD_POLL", default_value = "10000", value_parser = parse_u64)]
    pub checkpoint_upload_poll_ms: u64,
    /// Network mode: owners (comma-separated addresses) whose checkpoints a new remote process may
    /// cold-start from; empty: this node's own address, as the reference.
    #[arg(long, env = "PROCESS_CHECKPOINT_TRUSTED_OWNERS", value_delimiter = ',')]
    pub process_checkpoint_trusted_owners: Vec<String>,
    /// Network mode: GraphQL asked for checkpoints after the gateway's failed twice.
    #[arg(long, env = "CHECKPOINT_GRAPHQL_URL")]
    pub checkpoint_graphql_url: Option<String>,
    /// Checkpoint ids never cold-started from (comma-separated).
    #[arg(long, env = "IGNORE_ARWEAVE_CHECKPOINTS", value_delimiter = ',')]
    pub ignore_arweave_checkpoints: Vec<String>,
    /// Processes never cold-started from a checkpoint (comma-separated ids).
    #[arg(long, env = "PROCESS_IGNORE_ARWEAVE_CHECKPOINTS", value_delimiter = ',')]
    pub process_ignore_arweave_checkpoints: Vec<String>,

    /// `argv[0]` given to every process's `main` (Emscripten keeps it in memory, and metered modules
    /// count its bytes). The reference CU passes its worker script's path, e.g.
    /// `/usr/app/src/effects/worker/evaluator/index.js` in its Docker image: give that path to compute
    /// memory and `GasUsed` identical to that deployment.
    #[arg(long, env = "AO_CU_THIS_PROGRAM", default_value = cu_wasm::THIS_PROGRAM)]
    pub this_program: String,

    // --- Unit mode and the hbu route.
    /// `cu`: the embedded MU + SU + CU; `hbu`: also compute for a HyperBEAM node beside this one, through
    /// `POST /result/:slot` (only callers on this host, or holding `--hbu-token`).
    #[arg(long, env = "UNIT_MODE", default_value = "cu", value_parser = ["cu", "hbu"])]
    pub unit_mode: String,
    /// hbu mode: the shared secret HyperBEAM presents as `Authorization: Bearer <token>`; when set, it is
    /// required of every caller, loopback included.
    #[arg(long, env = "AO_CU_HBU_TOKEN", hide_env_values = true)]
    pub hbu_token: Option<String>,
    /// hbu mode: require every posted assignment to verify as a signed ANS-104 item (`true`/`false`;
    /// HyperBEAM's own processes carry httpsig commitments, which do not).
    #[arg(long, env = "AO_CU_HBU_VERIFY_SIGNATURES", default_value_t = false, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub hbu_verify_signatures: bool,

    // --- Bounded resources at the edge.
    /// Proxies (comma-separated addresses or CIDR networks) whose `X-Forwarded-For`/`X-Real-IP` are
    /// believed, and which are exempt from the per-address connection cap.
    #[arg(long, env = "AO_CU_TRUSTED_PROXIES", default_value = "", value_parser = parse_proxies)]
    pub trusted_proxies: cu_http::TrustedProxies,
    /// Most open HTTP connections (clamped below the process's file-descriptor limit).
    #[arg(long, env = "AO_CU_MAX_CONNECTIONS", default_value_t = 16_384)]
    pub max_connections: usize,
    /// Most open HTTP connections from one peer address (trusted proxies exempt).
    #[arg(long, env = "AO_CU_MAX_CONNECTIONS_PER_IP", default_value_t = 1_024)]
    pub max_connections_per_ip: usize,
    /// A connection must send a complete request head within this many ms of opening and of each answer.
    #[arg(long, env = "AO_CU_HEADER_TIMEOUT", default_value = "20000", value_parser = parse_u64)]
    pub header_timeout_ms: u64,
    /// A request body must arrive whole within this many ms (408 otherwise).
    #[arg(long, env = "AO_CU_BODY_TIMEOUT", default_value = "60000", value_parser = parse_u64)]
    pub body_timeout_ms: u64,
    /// Bytes of request bodies held at once over all requests (503 with Retry-After beyond).
    #[arg(long, env = "AO_CU_UPLOAD_BUDGET", default_value = "536870912", value_parser = parse_u64)]
    pub upload_budget: u64,
    /// Bytes of data items one wallet may post per quota window (0 = no quota).
    #[arg(long, env = "AO_CU_UPLOAD_QUOTA_BYTES", default_value = "0", value_parser = parse_u64)]
    pub upload_quota_bytes: u64,
    /// The upload quota window in ms.
    #[arg(long, env = "AO_CU_UPLOAD_QUOTA_WINDOW", default_value = "60000", value_parser = parse_u64)]
    pub upload_quota_window_ms: u64,

    // --- Compute limits and preemption.
    /// Gas per message of a process with no `Compute-Limit` tag (nor its module). It decides results, so
    /// it is bound into the attestation.
    #[arg(long, env = "AO_CU_DEFAULT_COMPUTE_LIMIT", default_value = "9_000_000_000_000", value_parser = parse_u64)]
    pub default_compute_limit: u64,
    /// Largest `Compute-Limit` a spawned process may ask for (413 beyond).
    #[arg(long, env = "PROCESS_WASM_COMPUTE_MAX_LIMIT", default_value = "9_000_000_000_000", value_parser = parse_u64)]
    pub max_compute_limit: u64,
    /// Largest `Memory-Limit` a spawned process may ask for, in bytes (413 beyond).
    #[arg(long, env = "PROCESS_WASM_MEMORY_MAX_LIMIT", default_value = "1073741824", value_parser = parse_u64)]
    pub max_memory_limit: u64,
    /// Longest a dry-run may evaluate, in ms, before it is stopped (422).
    #[arg(long, env = "AO_CU_DRY_RUN_TIMEOUT", default_value = "10000", value_parser = parse_u64)]
    pub dry_run_timeout_ms: u64,
    /// Time a shard's thread may spend on one process's command before the shard's other processes are
    /// handed to another thread, in ms.
    #[arg(long, env = "AO_CU_TIME_SLICE", default_value = "250", value_parser = parse_u64)]
    pub time_slice_ms: u64,
    /// Long commands (past their time slice) that may run at once; more wait; default: one per core.
    #[arg(long, env = "AO_CU_LONG_EVALUATIONS")]
    pub long_evaluations: Option<usize>,

    // --- QUIC, the unit-to-unit protocol (docs/quic.md).
    /// UDP address of the QUIC endpoint (e.g. `0.0.0.0:6364`; port 0: any free port, printed); unset:
    /// no QUIC. With it, `GET /` advertises the endpoint and peers may subscribe to this node's
    /// schedules, forward messages and ask for results and dry-runs; a network CU also follows its
    /// remote processes' schedules over QUIC wherever their SU offers it.
    #[arg(long, env = "AO_CU_QUIC_LISTEN")]
    pub quic_listen: Option<SocketAddr>,
    /// QUIC peers admitted by key: `any`, or comma-separated keyids (`node_key.keyid` of their
    /// `GET /`) or hex keys. Empty: only peers with verified SEV-SNP evidence (`--quic-policy`).
    #[arg(long, env = "AO_CU_QUIC_ALLOW", default_value = "")]
    pub quic_allow: String,
    /// An SEV-SNP verifier policy (TOML, see `attest/`): a peer not on the allow-list is admitted when
    /// its evidence for a fresh nonce verifies under it and binds its key.
    #[arg(long, env = "AO_CU_QUIC_POLICY")]
    pub quic_policy: Option<PathBuf>,
    /// Network mode with QUIC: follow remote schedules pushed over QUIC (`false`: HTTP pages only).
    #[arg(long, env = "AO_CU_QUIC_SUBSCRIBE", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub quic_subscribe: bool,
    /// A subscriber that leaves slots waiting without credit this long (ms) is dropped.
    #[arg(long, env = "AO_CU_QUIC_STALL_TIMEOUT", default_value = "30000", value_parser = parse_u64)]
    pub quic_stall_timeout_ms: u64,
}

fn parse_proxies(s: &str) -> Result<cu_http::TrustedProxies, String> {
    s.parse()
}

/// Numbers as the reference's config accepts them: decimal with optional `_` separators.
fn parse_db_url(s: &str) -> Result<cu_store::Database, String> {
    cu_store::Database::from_url(s)
}

fn parse_u64(s: &str) -> Result<u64, String> {
    s.replace('_', "")
        .parse::<u64>()
        .map_err(|e| format!("{s:?}: {e}"))
}

/// Reads the wallet from `path`, or generates one there (mode 0600) if `generate` and it does not exist.
fn load_wallet(path: &Path, generate: bool) -> Result<Wallet> {
    match std::fs::read_to_string(path) {
        Ok(json) => {
            Wallet::from_jwk_json(&json).with_context(|| format!("reading the wallet JWK {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && generate => {
            let wallet = Wallet::generate().context("generating the node wallet")?;
            let tmp = path.with_extension("json.tmp");
            write_private(&tmp, wallet.to_jwk_json().as_bytes())?;
            std::fs::rename(&tmp, path).with_context(|| format!("writing the wallet {}", path.display()))?;
            tracing::info!(path = %path.display(), address = %wallet.address(), "generated the node wallet");
            Ok(wallet)
        }
        Err(e) => Err(e).with_context(|| format!("reading the wallet {}", path.display())),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

/// The node's clock: wall-clock milliseconds. It stamps scheduled messages (as an SU's clock does); the
/// timestamps are stored with the schedule, so evaluation stays deterministic.
fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn node_config(args: &ServeArgs, wallet: Wallet, public_url: String, cluster_url: String) -> NodeConfig {
    let public_url_for_uploads = public_url.clone();
    let mut engine = cu_engine::EngineConfig::default();
    if let Some(n) = args.workers {
        engine.workers = n.max(1);
    }
    if let Some(n) = args.dry_run_workers {
        engine.dry_run_workers = n.max(1);
    }
    if args.no_pin_cores {
        engine.pin_cores = false;
    }
    if let Some(b) = args.memory_budget {
        engine.memory_budget = b;
    }
    if let Some(n) = args.checkpoint_every_messages {
        engine.checkpoints.every_messages = n;
    }
    if let Some(ms) = args.checkpoint_every_eval_ms {
        engine.checkpoints.every_eval_time = Duration::from_millis(ms);
    }
    if let Some(g) = args.checkpoint_every_gas {
        engine.checkpoints.every_gas = g;
    }
    engine.limits = cu_engine::LimitPolicy {
        default_compute: args.default_compute_limit,
        max_compute: args.max_compute_limit,
        max_memory: args.max_memory_limit,
    };
    engine.this_program.clone_from(&args.this_program);
    engine.dry_run_timeout = Duration::from_millis(args.dry_run_timeout_ms);
    engine.time_slice = Duration::from_millis(args.time_slice_ms);
    if let Some(n) = args.long_evaluations {
        engine.long_evaluations = n.max(1);
    }
    let checkpoint_bucket = match (&args.checkpoint_s3_endpoint, &args.checkpoint_s3_bucket) {
        (Some(endpoint), Some(bucket)) => Some(cu_store::S3Config {
            endpoint: endpoint.clone(),
            bucket: bucket.clone(),
            region: args.checkpoint_s3_region.clone(),
            access_key: args.checkpoint_s3_access_key.clone(),
            secret_key: args.checkpoint_s3_secret_key.clone(),
            prefix: args.checkpoint_s3_prefix.clone(),
        }),
        _ => None,
    };
    let store = cu_store::StoreOptions {
        database: args.db_url.clone().unwrap_or_default(),
        checkpoint_bucket,
        lease: args.store_lease.as_ref().map(|owner| cu_store::LeaseOptions {
            owner: owner.clone(),
            ttl: Duration::from_millis(args.store_lease_ttl_ms.max(100)),
        }),
        ownership: args.cluster_node.as_ref().map(|node| cu_store::OwnershipOptions {
            node: node.clone(),
            url: cluster_url,
            ttl: Duration::from_millis(args.process_lease_ttl_ms.max(100)),
        }),
        fsync: args.fsync,
        ..cu_store::StoreOptions::default()
    };
    NodeConfig {
        data_dir: args.data_dir.clone(),
        wallet,
        engine,
        store,
        aot_cache: Some(
            args.aot_cache
                .clone()
                .unwrap_or_else(|| args.data_dir.join("aot")),
        ),
        max_item_bytes: usize::try_from(args.body_limit).unwrap_or(usize::MAX),
        cron: args.cron,
        clock: Arc::new(wall_clock_ms),
        public_url,
        hbu_verify_signatures: args.hbu_verify_signatures,
        upload_quota: (args.upload_quota_bytes > 0).then_some(cu_node::UploadQuota {
            bytes: args.upload_quota_bytes,
            window_ms: args.upload_quota_window_ms.max(1),
        }),
        network: network_config(args),
        checkpoint_uploads: checkpoint_uploads(args, &public_url_for_uploads),
        scheduler_role: args.roles.su,
        model_budget: args.model_memory,
    }
}

/// The items of a comma-separated list, trimmed, empty ones dropped.
fn non_empty(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Checkpoint uploads, when `DISABLE_PROCESS_CHECKPOINT_CREATION=false`.
fn checkpoint_uploads(args: &ServeArgs, public_url: &str) -> Option<cu_node::CheckpointUploads> {
    if args.disable_process_checkpoint_creation {
        return None;
    }
    let public_url = public_url.trim_end_matches('/');
    let graphql_url = match (&args.graphql_url, &args.gateway) {
        (Some(url), _) => url.clone(),
        (None, Some(gateway)) if !args.roles.gateway => format!("{}/graphql", gateway.trim_end_matches('/')),
        _ => format!("{public_url}/graphql"),
    };
    Some(cu_node::CheckpointUploads {
        uploader_url: args.uploader_url.clone().unwrap_or_else(|| public_url.to_owned()),
        graphql_url,
        throttle: Duration::from_millis(args.process_checkpoint_creation_throttle_ms),
        every_messages: args.checkpoint_upload_every.max(1),
        poll: Duration::from_millis(args.checkpoint_upload_poll_ms.max(10)),
        http: cu_node::HttpOptions {
            timeout: Duration::from_millis(args.upstream_timeout_ms.max(1)),
            retries: args.upstream_retries,
            ..cu_node::HttpOptions::default()
        },
    })
}

/// Network mode's settings, when a gateway is given.
fn network_config(args: &ServeArgs) -> Option<cu_node::NetworkConfig> {
    let gateway = args.gateway.as_deref()?;
    let mut upstream = cu_node::UpstreamConfig::for_gateway(gateway);
    if let Some(url) = &args.graphql_url {
        upstream.graphql_url = url.clone();
    }
    if let Some(url) = &args.arweave_url {
        upstream.arweave_url = url.trim_end_matches('/').to_owned();
    }
    upstream.su_url = args.su_url.clone();
    upstream.page_size = args.page_size.max(1);
    upstream.http = cu_node::HttpOptions {
        timeout: Duration::from_millis(args.upstream_timeout_ms.max(1)),
        retries: args.upstream_retries,
        ..cu_node::HttpOptions::default()
    };
    let poll = (args.upstream_poll_ms > 0).then(|| Duration::from_millis(args.upstream_poll_ms));
    Some(cu_node::NetworkConfig {
        upstream,
        poll,
        fresh_for: poll
            .unwrap_or(Duration::from_millis(1000))
            .min(Duration::from_millis(1000)),
        checkpoints: Some(cu_node::CheckpointColdStart {
            trusted_owners: non_empty(&args.process_checkpoint_trusted_owners),
            checkpoint_graphql_url: args.checkpoint_graphql_url.clone(),
            ignore_checkpoints: non_empty(&args.ignore_arweave_checkpoints),
            ignore_processes: non_empty(&args.process_ignore_arweave_checkpoints),
        }),
    })
}

/// What the node's attestation binds (`docs/attestation.md` §2.2): the engine and its version, every module
/// format it evaluates, and the node-wide limits that decide results (per-process memory and compute limits
/// come from each process's own tags, which the client reads on the process).
fn attest_config(args: &ServeArgs) -> cu_attest::NodeConfig {
    cu_attest::NodeConfig::new(
        format!("ao-cu {}", env!("CARGO_PKG_VERSION")),
        cu_types::ModuleFormat::ALL.map(cu_types::ModuleFormat::as_str),
        [
            ("default_compute_limit".to_owned(), args.default_compute_limit),
            ("max_item_bytes".to_owned(), args.body_limit),
            (
                "max_wasm_stack_bytes".to_owned(),
                u64::try_from(cu_wasm::engine::MAX_WASM_STACK).unwrap_or(u64::MAX),
            ),
        ],
    )
}

/// Loads or creates the node key in the data directory and builds the attestor over it.
fn attestor(args: &ServeArgs) -> Result<Attestor> {
    let key = NodeKey::load_or_create(&args.data_dir).with_context(|| {
        format!(
            "loading the node key {}",
            NodeKey::path_in(&args.data_dir).display()
        )
    })?;
    let kds = KdsFetcher::new(
        AMD_KDS_URL,
        CertCache::in_dir(args.data_dir.join("certs")),
        Duration::from_secs(10),
    );
    Attestor::new(Arc::new(key), &attest_config(args), Some(Arc::new(kds)))
        .context("building the node's attestation configuration")
}

/// Runs the node until SIGTERM/SIGINT.
pub fn run(args: ServeArgs) -> Result<()> {
    validate(&args)?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    let wallet = match &args.wallet_file {
        Some(path) => load_wallet(path, false)?,
        None => load_wallet(&args.data_dir.join("wallet.json"), true)?,
    };
    let attestor = Arc::new(attestor(&args)?);
    tracing::info!(keyid = %attestor.key().keyid(), tee = cu_attest::guest::tee_present(), "node key loaded");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ao-cu-http")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args, wallet, attestor))
}

async fn serve(args: ServeArgs, wallet: Wallet, attestor: Arc<Attestor>) -> Result<()> {
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .with_context(|| format!("bad listen address {}:{}", args.host, args.port))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr()?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| default_public_url(local));
    let address = wallet.address();
    let cluster_url = args
        .cluster_url
        .clone()
        .unwrap_or_else(|| default_public_url(local));
    let config = node_config(&args, wallet, public_url.clone(), cluster_url);
    let node = tokio::task::spawn_blocking(move || Node::open(config))
        .await
        .context("opening the node")?
        .context("opening the node")?;
    let http = HttpConfig {
        body_limit: usize::try_from(args.body_limit).unwrap_or(usize::MAX),
        metrics: args.metrics,
        dry_run_rate_limit: (args.dry_run_rate_limit > 0).then(|| RateLimit {
            window: Duration::from_millis(args.dry_run_rate_window_ms.max(1)),
            max_requests: args.dry_run_rate_limit,
        }),
        dry_run_cache_max_age: Duration::from_millis(args.dry_run_cache_ms),
        attestor: Some(attestor.clone()),
        hbu: (args.unit_mode == "hbu").then(|| cu_http::HbuAccess {
            token: args.hbu_token.clone().filter(|t| !t.is_empty()),
        }),
        trusted_proxies: args.trusted_proxies.clone(),
        upload_budget: Arc::new(cu_http::UploadBudget::new(args.upload_budget)),
        body_timeout: Duration::from_millis(args.body_timeout_ms.max(1)),
        roles: args.roles,
        ..HttpConfig::default()
    };
    let quic = match args.quic_listen {
        Some(addr) => Some(start_quic(&args, addr, &node, &attestor)?),
        None => None,
    };
    let mut http = http;
    if let Some(q) = &quic {
        let port = q.endpoint.local_addr()?.port();
        http.quic = Some(cu_quic::node::advertisement(port, &attestor.key().keyid()));
        let stats = q.endpoint.stats().clone();
        http.extra_metrics = Some(cu_http::ExtraMetrics(Arc::new(move |out: &mut String| {
            stats.render(out)
        })));
    }
    let connections = http.connections.clone();
    let limits = cu_http::ServerLimits {
        max_connections: connection_cap(args.max_connections),
        max_connections_per_ip: args.max_connections_per_ip.max(1),
        header_timeout: Duration::from_millis(args.header_timeout_ms.max(1)),
        trusted_proxies: args.trusted_proxies.clone(),
        ..cu_http::ServerLimits::default()
    };
    let app = cu_http::router(node.clone(), http);
    tracing::info!(%local, %public_url, %address, data_dir = %args.data_dir.display(), "ao-cu serve listening");
    // A line on stdout for scripts that start the server on port 0.
    println!("ao-cu serve listening on {local} (address {address})");
    let watched = node.clone();
    let stop = async move {
        tokio::select! {
            () = shutdown_signal() => {}
            () = lease_lost(&watched) => {}
        }
    };
    let served = cu_http::serve(listener, app, limits, connections, stop).await;
    let fenced = node.lease_lost();
    tracing::info!("stopped accepting connections; shutting the node down");
    if let Some(q) = quic {
        q.endpoint.close();
        drop(q.subscriptions);
    }
    let closed = tokio::task::spawn_blocking(move || node.shutdown())
        .await
        .context("shutting the node down")?;
    if fenced {
        // What the shutdown could not write was fenced off; the node that took over has the state.
        return Err(LeaseLost.into());
    }
    served.context("serving HTTP")?;
    closed.context("shutting the node down")?;
    tracing::info!("ao-cu serve stopped");
    Ok(())
}

/// `serve` stopped because another node took over the store lease (exit code 3).
#[derive(Debug)]
pub struct LeaseLost;

impl std::fmt::Display for LeaseLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "this node lost the store lease to another node; it stopped serving (its writes are fenced)",
        )
    }
}

impl std::error::Error for LeaseLost {}

/// Returns once the node's store lease was taken over by another node.
async fn lease_lost(node: &Node) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if node.lease_lost() {
            tracing::error!("another node took over the store lease: stopping");
            return;
        }
    }
}

/// The QUIC endpoint and, on a network CU, the schedule subscriptions it drives.
struct Quic {
    endpoint: Arc<cu_quic::QuicEndpoint>,
    subscriptions: Option<Arc<cu_quic::node::UpstreamSubscriptions>>,
}

/// Binds the QUIC endpoint with the node key, serves the node over it, and on a network CU follows
/// remote schedules over it.
fn start_quic(args: &ServeArgs, addr: SocketAddr, node: &Node, attestor: &Arc<Attestor>) -> Result<Quic> {
    let allow = cu_quic::AllowList::parse(&args.quic_allow)
        .map_err(|e| anyhow::anyhow!("--quic-allow (AO_CU_QUIC_ALLOW): {e}"))?;
    let evidence = match &args.quic_policy {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the QUIC peer policy {}", path.display()))?;
            let policy = cu_attest::Policy::from_toml(&text)
                .and_then(cu_attest::Policy::compile)
                .with_context(|| format!("the QUIC peer policy {}", path.display()))?;
            let verifier = cu_attest::Verifier::new().context("loading AMD's roots")?;
            Some(Arc::new(cu_quic::EvidencePolicy::new(verifier, Some(policy))))
        }
        None => None,
    };
    let mut config = cu_quic::QuicConfig::new(attestor.shared_key(), cu_quic::PeerPolicy { allow, evidence });
    config.stall_after = Duration::from_millis(args.quic_stall_timeout_ms.max(1));
    let source = attestor.clone();
    config.evidence = Some(Arc::new(move |nonce: &[u8]| {
        let evidence = source.evidence(nonce).map_err(|e| e.to_string())?;
        serde_json::to_vec(&evidence).map_err(|e| e.to_string())
    }));
    let service: Arc<dyn cu_quic::Service> = Arc::new(cu_quic::node::NodeService::new(node.clone()));
    let endpoint = Arc::new(
        cu_quic::QuicEndpoint::bind(
            addr,
            config,
            Some(service),
            Arc::new(cu_quic::QuicStats::default()),
        )
        .with_context(|| format!("starting QUIC on {addr}"))?,
    );
    let local = endpoint.local_addr()?;
    tracing::info!(%local, keyid = %attestor.key().keyid(), "QUIC listening");
    println!(
        "ao-cu QUIC listening on {local} (keyid {})",
        attestor.key().keyid()
    );
    let book = cu_quic::node::PeerBook::new(endpoint.clone());
    let subscriptions = (args.gateway.is_some() && args.roles.cu && args.quic_subscribe).then(|| {
        cu_quic::node::UpstreamSubscriptions::start(node.clone(), book.clone(), Duration::from_millis(500))
    });
    // An MU without this node's SU hands items to the network's SUs: over QUIC where they offer it.
    if args.gateway.is_some() && args.roles.mu {
        node.set_item_transport(Arc::new(cu_quic::node::QuicItemTransport::new(
            book,
            tokio::runtime::Handle::current(),
        )));
    }
    Ok(Quic {
        endpoint,
        subscriptions,
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

/// Raises the soft file-descriptor limit to the hard one and keeps the connection cap below it (with room
/// for the store, checkpoints and compiled modules), so connections are refused by the cap, never by
/// `accept` failing with "Too many open files".
fn connection_cap(wanted: usize) -> usize {
    const RESERVED: u64 = 512;
    let limit = match rustix::process::getrlimit(rustix::process::Resource::Nofile) {
        rustix::process::Rlimit {
            current: Some(current),
            maximum,
        } => {
            let raised = rustix::process::Rlimit {
                current: maximum.or(Some(current)),
                maximum,
            };
            match rustix::process::setrlimit(rustix::process::Resource::Nofile, raised) {
                Ok(()) => maximum.unwrap_or(current),
                Err(_) => current,
            }
        }
        _ => return wanted.max(1),
    };
    let room = usize::try_from(limit.saturating_sub(RESERVED).max(16)).unwrap_or(usize::MAX);
    if wanted > room {
        tracing::warn!(
            wanted,
            room,
            "--max-connections is above the file-descriptor limit; capped"
        );
    }
    wanted.min(room).max(1)
}

/// Fails early on a bad combination of flags.
/// The URL the node advertises (its `Scheduler-Location` record) when `--public-url` is not given: the
/// bound address, or `localhost` when bound to every interface.
fn default_public_url(local: SocketAddr) -> String {
    match local.ip() {
        ip if ip.is_unspecified() => format!("http://localhost:{}", local.port()),
        std::net::IpAddr::V6(ip) => format!("http://[{ip}]:{}", local.port()),
        ip => format!("http://{ip}:{}", local.port()),
    }
}

fn validate(args: &ServeArgs) -> Result<()> {
    if args.body_limit == 0 {
        bail!("--body-limit must be positive");
    }
    if args.upload_budget < args.body_limit {
        bail!(
            "--upload-budget ({}) must hold at least one body of --body-limit ({})",
            args.upload_budget,
            args.body_limit
        );
    }
    if args.hbu_token.is_some() && args.unit_mode != "hbu" {
        bail!("--hbu-token is only used with --unit-mode hbu");
    }
    if args.cluster_node.is_some() {
        if args.gateway.is_some() {
            bail!(
                "--cluster-node: a cluster computes the processes its nodes schedule; network mode (--gateway) is not supported in a cluster yet"
            );
        }
        if args.quic_listen.is_some() {
            bail!(
                "--cluster-node: QUIC (--quic-listen) is not routed to process owners yet; serve a cluster over HTTP"
            );
        }
        if args.unit_mode == "hbu" {
            bail!("--cluster-node: hbu mode is not supported in a cluster yet");
        }
        if args
            .cluster_node
            .as_deref()
            .is_some_and(|n| n.is_empty() || n.contains('@'))
        {
            bail!("--cluster-node must be a non-empty name without '@'");
        }
    }
    if args.default_compute_limit > args.max_compute_limit {
        bail!("--default-compute-limit must not exceed --max-compute-limit");
    }
    if args.dry_run_timeout_ms == 0 || args.time_slice_ms == 0 {
        bail!("--dry-run-timeout-ms and --time-slice-ms must be positive");
    }
    if args.this_program.is_empty() || args.this_program.contains('\0') {
        bail!("--this-program must be a non-empty path without NUL bytes");
    }
    let roles = args.roles;
    if roles.mu && !roles.su && args.gateway.is_none() {
        bail!(
            "--roles {roles}: an MU without this node's SU hands messages to the network's SUs and needs --gateway URL (GATEWAY_URL)"
        );
    }
    if roles.cu && !roles.su && args.gateway.is_none() {
        bail!(
            "--roles {roles}: a CU without this node's SU computes the network's processes and needs --gateway URL (GATEWAY_URL)"
        );
    }
    for (flag, url) in [
        ("--gateway", &args.gateway),
        ("--graphql-url", &args.graphql_url),
        ("--arweave-url", &args.arweave_url),
        ("--su-url", &args.su_url),
        ("--uploader-url", &args.uploader_url),
        ("--checkpoint-graphql-url", &args.checkpoint_graphql_url),
    ] {
        if let Some(u) = url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            bail!("{flag} {u:?}: expected an http:// or https:// URL");
        }
    }
    if !args.disable_process_checkpoint_creation && args.uploader_url.is_none() && !roles.gateway {
        bail!(
            "DISABLE_PROCESS_CHECKPOINT_CREATION=false: checkpoints are uploaded to a bundler; give --uploader-url URL \
             (UPLOADER_URL), or serve the gateway role so this node takes them itself"
        );
    }
    if args.gateway.is_none()
        && (args.graphql_url.is_some() || args.arweave_url.is_some() || args.su_url.is_some())
    {
        bail!(
            "--graphql-url, --arweave-url and --su-url are read in network mode only: give --gateway URL too"
        );
    }
    Ok(())
}
