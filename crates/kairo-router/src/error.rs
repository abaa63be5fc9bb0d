//! What can stop a router from starting or make it stop.

use std::net::SocketAddr;
use std::path::PathBuf;

/// A router that could not start, or that failed while running.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The configuration does not pass its checks; one line per problem.
    #[error("configuration:\n  {}", .0.join("\n  "))]
    Config(Vec<String>),
    /// The shared HTTP client could not be built.
    #[error("building the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// Plugins did not load or reject their sections; one line each.
    #[error("plugins:\n  {}", .0.join("\n  "))]
    Plugins(Vec<String>),
    /// The store could not be opened or read.
    #[error("opening store.path {path}")]
    Store {
        /// `store.path`.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<kairo_store::StoreError>,
    },
    /// A directory could not be watched for changes.
    #[error("watching {what} {path}")]
    Watch {
        /// `rules`, `handlers` or `plugins`.
        what: &'static str,
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<notify::Error>,
    },
    /// The HTTP listener could not be bound.
    #[error("binding server.listen {addr}")]
    Bind {
        /// `server.listen`.
        addr: SocketAddr,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// NATS did not answer in time (the URL shown without credentials).
    #[error("nats.url {0}: no answer within 10 s")]
    NatsTimeout(String),
    /// Connecting to NATS failed (the URL shown without credentials).
    #[error("connecting to nats.url {url}")]
    NatsConnect {
        /// `nats.url`, credentials masked.
        url: String,
        /// What went wrong.
        #[source]
        source: Box<async_nats::ConnectError>,
    },
    /// Subscribing to the NATS subject or JetStream consumer failed.
    #[error(transparent)]
    NatsIngest(#[from] Box<kairo_ingest::nats::NatsIngestError>),
    /// Setting up cluster mode (partition stream, consumers, members bucket) failed.
    #[error(transparent)]
    Cluster(#[from] Box<kairo_ingest::cluster::ClusterError>),
    /// A task of the router panicked or was cancelled.
    #[error("the {0} task failed")]
    Task(&'static str, #[source] tokio::task::JoinError),
    /// The store writer thread panicked.
    #[error("the store writer panicked")]
    WriterPanicked,
}
