use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use super::connection;
use crate::broker::Broker;

/// Accepts Kafka connections on one listener until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    name: String,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(listener = %name, %addr, "Kafka listener ready");
    }
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(connection::run(stream, peer, name.clone(), Arc::clone(&broker)));
                }
                Err(e) => {
                    // Running out of file descriptors must not end the accept loop.
                    warn!(listener = %name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = async { shutdown.wait_for(|stop| *stop).await.map(|_| ()) } => return,
        }
    }
}
