//! The front: our own accept loop in front of every rmqtt listener.
//!
//! rmqtt's listeners only hand hooks the leaf certificate's CN/subject,
//! have no optional-client-certificate mode, never time out a client that
//! connects and says nothing (its version probe has no deadline), and do
//! not enforce `max_connections` at accept. So each configured listener is
//! ours: we accept, count the connection against the limit, terminate TLS
//! (rustls with ring), and pipe the bytes to an rmqtt listener bound to an
//! ephemeral loopback port. The kernel-assigned local address of our
//! loopback connection is the key under which the real peer address, the
//! verified DER chain and the listener name wait for the connect hook; a
//! loopback connection we did not make finds nothing there and is refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

use crate::BrokerError;
use crate::config::{ClientCerts, TlsConfig};
use crate::metrics::Metrics;

/// What the front knows about a client connection.
#[derive(Debug, Clone)]
pub struct FrontInfo {
    /// The client's real address.
    pub peer: SocketAddr,
    /// The verified client chain (DER, leaf first); empty without one.
    pub chain: Arc<Vec<Vec<u8>>>,
    /// The listener's configured name.
    pub listener: Arc<str>,
}

/// Loopback connection address → what the front learned about the client.
#[derive(Debug, Default)]
pub struct Registry {
    map: Mutex<HashMap<SocketAddr, FrontInfo>>,
}

impl Registry {
    pub fn lookup(&self, backend_peer: SocketAddr) -> Option<FrontInfo> {
        self.lock().get(&backend_peer).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, FrontInfo>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single insert/remove), so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(self: &Arc<Self>, key: SocketAddr, info: FrontInfo) -> Entry {
        self.lock().insert(key, info);
        Entry {
            registry: self.clone(),
            key,
        }
    }
}

/// Removes its registry entry when the connection ends.
struct Entry {
    registry: Arc<Registry>,
    key: SocketAddr,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.key);
    }
}

/// Build the rustls acceptor of a TLS listener (ring provider).
pub fn tls_acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, BrokerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let bad = |path: &Path, message: String| BrokerError::Tls {
        path: path.to_owned(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| bad(&tls.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&tls.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(&tls.cert, "no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| bad(&tls.key, e.to_string()))?;
    let verifier = match (&tls.client_ca, tls.client_certs) {
        (_, ClientCerts::None) | (None, _) => WebPkiClientVerifier::no_client_auth(),
        (Some(ca), mode) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(ca, e.to_string()))? {
                let cert = cert.map_err(|e| bad(ca, e.to_string()))?;
                roots.add(cert).map_err(|e| bad(ca, e.to_string()))?;
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = if mode == ClientCerts::Optional {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            builder.build().map_err(|e| bad(ca, e.to_string()))?
        }
    };
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&tls.cert, e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| bad(&tls.key, e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// One front listener.
pub struct Front {
    pub listener: TcpListener,
    pub backend: SocketAddr,
    pub tls: Option<TlsAcceptor>,
    pub name: Arc<str>,
    pub registry: Arc<Registry>,
    /// Shared by all listeners: one permit per open client connection.
    pub slots: Arc<Semaphore>,
    pub connect_timeout: Duration,
    pub metrics: Arc<Metrics>,
}

impl Front {
    /// Accept until the task is aborted.
    pub async fn serve(self) {
        let this = Arc::new(self);
        loop {
            let (socket, peer) = match this.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off
                    // instead of spinning.
                    tracing::warn!(listener = %this.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = this.slots.clone().try_acquire_owned() else {
                this.metrics.refused_connection("limit");
                tracing::warn!(listener = %this.name, %peer, "connection limit reached; closed");
                drop(socket);
                continue;
            };
            let front = this.clone();
            tokio::spawn(async move {
                front.metrics.open_connection();
                let outcome = front.handle(socket, peer).await;
                front.metrics.close_connection();
                if let Err(reason) = outcome {
                    front.metrics.refused_connection(reason);
                    tracing::debug!(listener = %front.name, %peer, reason, "connection ended early");
                }
                drop(permit);
            });
        }
    }

    async fn handle(&self, socket: TcpStream, peer: SocketAddr) -> Result<(), &'static str> {
        let deadline = Instant::now() + self.connect_timeout;
        let _ = socket.set_nodelay(true);
        match &self.tls {
            None => self.relay(socket, peer, Vec::new(), deadline).await,
            Some(acceptor) => {
                let stream = match tokio::time::timeout_at(deadline, acceptor.accept(socket)).await
                {
                    Err(_) => return Err("tls-timeout"),
                    Ok(Err(_)) => return Err("tls-handshake"),
                    Ok(Ok(stream)) => stream,
                };
                let chain = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|certs| certs.iter().map(|c| c.as_ref().to_vec()).collect())
                    .unwrap_or_default();
                self.relay(stream, peer, chain, deadline).await
            }
        }
    }

    async fn relay<S>(
        &self,
        client: S,
        peer: SocketAddr,
        chain: Vec<Vec<u8>>,
        deadline: Instant,
    ) -> Result<(), &'static str>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let backend = TcpStream::connect(self.backend)
            .await
            .map_err(|_| "backend-connect")?;
        let _ = backend.set_nodelay(true);
        let key = backend.local_addr().map_err(|_| "backend-connect")?;
        let _entry = self.registry.insert(
            key,
            FrontInfo {
                peer,
                chain: Arc::new(chain),
                listener: self.name.clone(),
            },
        );
        pipe(client, backend, deadline).await
    }
}

/// Copy bytes both ways until either side closes. The broker must answer
/// (CONNACK) before `deadline`, or the connection is closed: this bounds a
/// client that connects and says nothing, or says too little.
async fn pipe<S>(client: S, backend: TcpStream, deadline: Instant) -> Result<(), &'static str>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut backend_rx, mut backend_tx) = backend.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut client_rx, &mut backend_tx).await;
        let _ = backend_tx.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 8 * 1024];
        let first = match tokio::time::timeout_at(deadline, backend_rx.read(&mut buf)).await {
            Err(_) => return Err("connect-timeout"),
            Ok(Err(_)) | Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => n,
        };
        if client_tx.write_all(&buf[..first]).await.is_err() || client_tx.flush().await.is_err() {
            return Ok(());
        }
        drop(buf);
        let _ = tokio::io::copy(&mut backend_rx, &mut client_tx).await;
        // Send TLS close_notify / FIN after the broker's last bytes.
        let _ = tokio::time::timeout(Duration::from_secs(1), client_tx.shutdown()).await;
        Ok(())
    };
    tokio::pin!(up, down);
    let finished = tokio::select! {
        () = &mut up => None,
        r = &mut down => Some(r),
    };
    match finished {
        Some(r) => r,
        // The client is done sending: let the broker finish with what it
        // got (it closes on EOF) rather than resetting it mid-read.
        None => tokio::time::timeout(Duration::from_secs(2), down)
            .await
            .unwrap_or(Ok(())),
    }
}
