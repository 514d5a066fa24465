//! [`Upstream`]: what a network CU reads from the AO network.

use crate::error::UpstreamError;
use crate::gateway::{Gateway, GqlTx};
use crate::http::{Fetcher, HttpOptions, encode_query};
use crate::locate::Locator;
use crate::wire::{SuMessage, SuPage, SuProcess};

/// Where the upstream is and how to talk to it (the reference CU's `GATEWAY_URL`, `GRAPHQL_URL`,
/// `ARWEAVE_URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// GraphQL endpoint (`GRAPHQL_URL`, default `{GATEWAY_URL}/graphql`).
    pub graphql_url: String,
    /// Raw data under `{ARWEAVE_URL}/raw/:id` (default `GATEWAY_URL`).
    pub arweave_url: String,
    /// A fixed SU URL for every process, instead of locating each through the gateway.
    pub su_url: Option<String>,
    /// Slots per SU page (`LOAD_MESSAGES_PAGE_SIZE`, 1000 in the reference).
    pub page_size: usize,
    /// Timeouts, retries, body cap.
    pub http: HttpOptions,
}

impl UpstreamConfig {
    /// The reference's defaults for a gateway at `gateway_url`.
    pub fn for_gateway(gateway_url: &str) -> UpstreamConfig {
        let base = gateway_url.trim_end_matches('/');
        UpstreamConfig {
            graphql_url: format!("{base}/graphql"),
            arweave_url: base.to_owned(),
            su_url: None,
            page_size: 1000,
            http: HttpOptions::default(),
        }
    }
}

fn check_url(what: &str, url: &str) -> Result<(), UpstreamError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(UpstreamError::Config(format!(
            "{what} {url:?} is not an http(s) URL"
        )))
    }
}

/// The network upstream of a CU. Blocking; cheap to share.
pub struct Upstream {
    fetcher: Fetcher,
    gateway: Gateway,
    locator: Locator,
    page_size: usize,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Checks the URLs and builds the clients.
    pub fn new(config: UpstreamConfig) -> Result<Upstream, UpstreamError> {
        check_url("GRAPHQL_URL", &config.graphql_url)?;
        check_url("ARWEAVE_URL", &config.arweave_url)?;
        if let Some(su) = &config.su_url {
            check_url("SU URL", su)?;
        }
        let fetcher = Fetcher::new(config.http.clone());
        Ok(Upstream {
            gateway: Gateway::new(fetcher.clone(), config.graphql_url, config.arweave_url),
            fetcher,
            locator: Locator::new(config.su_url),
            page_size: config.page_size.clamp(1, 5000),
        })
    }

    /// The gateway client.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The URL of the SU of scheduler `address` (its newest `Scheduler-Location` record; the pinned SU
    /// when there is one).
    pub fn scheduler_url(&self, address: &str) -> Result<String, UpstreamError> {
        if let Some(url) = self.locator.pinned() {
            return Ok(url.to_owned());
        }
        Ok(self.gateway.scheduler_location(address)?.0)
    }

    /// `POST {su_url}/` with a signed data item, as an MU hands a message or a spawn to its SU; the SU's
    /// JSON answer (retried like every upstream request: the SU answers a repeated item with its id).
    pub fn post_item(&self, su_url: &str, raw: &[u8]) -> Result<serde_json::Value, UpstreamError> {
        self.fetcher.post_bytes(
            "forwarding a data item to its SU",
            &format!("{su_url}/"),
            "application/octet-stream",
            raw,
        )
    }

    /// `POST {su_url}/?process-id=&assign=[&exclude=]`: asks the SU to assign an existing message to a
    /// process, as an MU does; the SU's JSON answer.
    pub fn post_assign(
        &self,
        su_url: &str,
        process_id: &str,
        message_id: &str,
        exclude: Option<&str>,
    ) -> Result<serde_json::Value, UpstreamError> {
        let mut url = format!(
            "{su_url}/?process-id={}&assign={}",
            encode_query(process_id),
            encode_query(message_id)
        );
        if let Some(e) = exclude.filter(|e| !e.is_empty()) {
            url.push_str(&format!("&exclude={}", encode_query(e)));
        }
        self.fetcher.post_bytes(
            "forwarding an assignment to its SU",
            &url,
            "application/octet-stream",
            b"",
        )
    }

    /// The URL of `process_id`'s SU.
    pub fn locate(&self, process_id: &str) -> Result<String, UpstreamError> {
        self.locator.locate(&self.gateway, process_id)
    }

    /// `GET {su}/processes/{pid}`, checked as the reference does (`Data-Protocol=ao`, `Type=Process`, a
    /// `Module` tag, the id it asked for).
    pub fn process(&self, su_url: &str, process_id: &str) -> Result<SuProcess, UpstreamError> {
        let url = format!("{su_url}/processes/{}", encode_query(process_id));
        let what = format!("SU process {process_id}");
        let p: SuProcess = self.fetcher.get_json(&what, &url)?;
        if p.process_id != process_id {
            return Err(UpstreamError::malformed(
                &what,
                &url,
                format!("it is process {}", p.process_id),
            ));
        }
        for (name, value) in [
            ("Data-Protocol", Some("ao")),
            ("Type", Some("Process")),
            ("Module", None),
        ] {
            let found = crate::wire::tag(&p.tags, name);
            let ok = match value {
                Some(v) => found == Some(v),
                None => found.is_some(),
            };
            if !ok {
                return Err(UpstreamError::malformed(
                    &what,
                    &url,
                    format!(
                        "Tag '{name}': {}",
                        value.map_or("is required".to_owned(), |v| format!("must be {v}"))
                    ),
                ));
            }
        }
        Ok(p)
    }

    /// One page of `process_id`'s schedule after cursor `from` (exclusive; from the start when `None`).
    pub fn page(&self, su_url: &str, process_id: &str, from: Option<&str>) -> Result<SuPage, UpstreamError> {
        let pid = encode_query(process_id);
        let mut url = format!("{su_url}/{pid}?process-id={pid}&limit={}", self.page_size);
        if let Some(from) = from {
            url.push_str(&format!("&from={}", encode_query(from)));
        }
        self.fetcher.get_json(&format!("SU page of {process_id}"), &url)
    }

    /// A module: its meta (GraphQL) and its binary (`/raw`).
    pub fn module(&self, module_id: &str) -> Result<(GqlTx, Vec<u8>), UpstreamError> {
        let meta = self.gateway.transaction(module_id)?;
        let wasm = self.gateway.raw(module_id)?;
        Ok((meta, wasm))
    }

    /// An assigned message, hydrated from the gateway.
    pub fn hydrate(&self, message_id: &str, exclude: &[String]) -> Result<SuMessage, UpstreamError> {
        self.gateway.hydrate(message_id, exclude)
    }
}
