//! A TCP relay on a loopback port in front of a server (PostgreSQL here)
//! that can hold the server's answers back: what a client sees when the
//! network delays them, or when it is frozen while they wait. It tells
//! when it holds one, so a test acts once the server has answered (its
//! work done: a commit), not after a guess of how long that takes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

pub struct Relay {
    pub port: u16,
    hold: watch::Sender<bool>,
    held: Arc<(AtomicUsize, Notify)>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays every connection made to its port to `127.0.0.1:to`.
    pub async fn start(to: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (hold, holding) = watch::channel(false);
        let held: Arc<(AtomicUsize, Notify)> = Arc::default();
        let counted = held.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, holding.clone(), counted.clone()));
            }
        });
        Relay {
            port,
            hold,
            held,
            accept,
        }
    }

    /// The server's answers wait from now on.
    pub fn hold(&self) {
        self.held.0.store(0, Ordering::SeqCst);
        self.hold.send_replace(true);
    }

    /// The answers held go on, and later ones pass.
    pub fn release(&self) {
        self.hold.send_replace(false);
    }

    /// Waits until an answer is held since [`Relay::hold`].
    pub async fn holding(&self) {
        loop {
            let woken = self.held.1.notified();
            if self.held.0.load(Ordering::SeqCst) > 0 {
                return;
            }
            woken.await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    mut holding: watch::Receiver<bool>,
    held: Arc<(AtomicUsize, Notify)>,
) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
        let _ = to_server.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from_server.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if *holding.borrow() {
            held.0.fetch_add(1, Ordering::SeqCst);
            held.1.notify_waiters();
            if holding.wait_for(|h| !*h).await.is_err() {
                break;
            }
        }
        if to_client.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to_client.shutdown().await;
    up.abort();
}
