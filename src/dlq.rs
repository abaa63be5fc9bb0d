//! `kairo dlq`: list, retry and drop dead letters. Works on the store file
//! directly when no router has it open, and through the running router's
//! admin endpoints when one does (redb allows one process per file).

use anyhow::Context as _;
use kairo_core::{Clock, SystemClock};
use kairo_store::{Store, StoreError};
use serde_json::{Value, json};

use crate::config::KairoConfig;

/// What to do with dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlqCommand {
    /// Print every dead letter as a JSON line.
    List,
    /// Move dead letters back to the outbox (`all`, or the given ids).
    Retry {
        /// Ids to retry.
        ids: Vec<String>,
        /// Retry every action dead letter.
        all: bool,
    },
    /// Delete one dead letter.
    Drop {
        /// Its id.
        id: String,
    },
}

/// Runs `command`; returns the lines to print.
pub async fn run(config: &KairoConfig, command: DlqCommand) -> anyhow::Result<Vec<String>> {
    let path = config.store.path.clone();
    let cache = config.store.cache_mib << 20;
    let opened = tokio::task::spawn_blocking(move || Store::open_with_cache(path, cache)).await?;
    match opened {
        Ok(store) => tokio::task::spawn_blocking(move || offline(&store, command)).await?,
        Err(StoreError::InUse(_)) => online(config, command).await,
        Err(error) => Err(error.into()),
    }
}

/// The running router's base URL, from `server.listen`.
pub fn router_base(config: &KairoConfig) -> anyhow::Result<String> {
    let listen = config
        .listen_addr()
        .context("server.listen is not a socket address")?;
    Ok(format!("http://{listen}"))
}

/// `request` with the bearer token, when `server.token` is set.
pub fn authorized(
    config: &KairoConfig,
    request: reqwest::RequestBuilder,
) -> reqwest::RequestBuilder {
    match &config.server.token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

fn offline(store: &Store, command: DlqCommand) -> anyhow::Result<Vec<String>> {
    Ok(match command {
        DlqCommand::List => store
            .dead_letters()?
            .iter()
            .map(|letter| serde_json::to_string(letter).expect("serializable"))
            .collect(),
        DlqCommand::Retry { ids, all } => {
            let ids = (!all).then_some(ids);
            let retried = store.retry_dead(ids.as_deref(), SystemClock.now_ms())?;
            retried
                .iter()
                .map(|a| {
                    format!(
                        "retry scheduled: {} (performed when kairo next runs)",
                        a.key()
                    )
                })
                .collect()
        }
        DlqCommand::Drop { id } => {
            anyhow::ensure!(store.drop_dead(&id)?, "no dead letter with id {id}");
            vec![format!("dropped: {id}")]
        }
    })
}

async fn online(config: &KairoConfig, command: DlqCommand) -> anyhow::Result<Vec<String>> {
    let base = router_base(config)?;
    let http = reqwest::Client::new();
    let with_token = |request| authorized(config, request);
    let request = match &command {
        DlqCommand::List => with_token(http.get(format!("{base}/v1/dead-letters"))),
        DlqCommand::Retry { ids, all } => {
            with_token(http.post(format!("{base}/v1/dead-letters/retry")))
                .json(&json!({"ids": ids, "all": all}))
        }
        DlqCommand::Drop { id } => with_token(http.delete(format!("{base}/v1/dead-letters/{id}"))),
    };
    let response = request.send().await.with_context(|| {
        format!("the store is in use, and the running router at {base} did not answer")
    })?;
    let status = response.status();
    let body: Value = if status == reqwest::StatusCode::NO_CONTENT {
        Value::Null
    } else {
        response
            .json()
            .await
            .context("reading the router's answer")?
    };
    anyhow::ensure!(
        status.is_success(),
        "{base}: HTTP {status}: {}",
        body["error"].as_str().unwrap_or_default()
    );
    Ok(match command {
        DlqCommand::List => body
            .as_array()
            .map(|letters| letters.iter().map(Value::to_string).collect())
            .unwrap_or_default(),
        DlqCommand::Retry { .. } => body["retried"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .map(|id| format!("retry scheduled: {}", id.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default(),
        DlqCommand::Drop { id } => vec![format!("dropped: {id}")],
    })
}
