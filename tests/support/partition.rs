//! A network partition between one client and the API server, without iptables (not installed
//! here, and it would cut the test's own clients on the loopback too): a TCP proxy the test
//! cuts and heals, between the operator and the API server.
//!
//! Cut, it passes nothing in either direction and kills nothing, as dropped packets would. A
//! connection open at the cut stays stalled for good, both sockets open: the API server's
//! retransmissions of what it sent meanwhile would come tens of seconds to minutes after the
//! partition ends, here never. New connections wait in the listen backlog until the cut
//! heals, as unanswered SYNs would be retried, and then go through.

#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub struct Partition {
    /// The API server's URL through the proxy: `https://127.0.0.1:<port>` (its serving
    /// certificate names 127.0.0.1, whatever the port).
    pub url: String,
    cut: watch::Sender<bool>,
    proxy: JoinHandle<()>,
}

impl Partition {
    /// A proxy to the API server at `upstream` (`https://host:port`), not cut.
    pub async fn start(upstream: &str) -> Partition {
        let upstream: SocketAddr = upstream
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|err| {
                panic!("the API server URL {upstream} is no https://ip:port: {err}")
            });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the partition proxy");
        let url = format!("https://{}", listener.local_addr().unwrap());
        let (cut, is_cut) = watch::channel(false);
        let proxy = tokio::spawn(accept(listener, upstream, is_cut));
        Partition { url, cut, proxy }
    }

    /// From now on nothing passes.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// New connections go through again (those open at the cut stay stalled).
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Partition {
    /// Closes every connection (the relays are the accept task's).
    fn drop(&mut self) {
        self.proxy.abort();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, mut is_cut: watch::Receiver<bool>) {
    let mut relays = JoinSet::new();
    loop {
        if !until(&mut is_cut, false).await {
            return;
        }
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = until(&mut is_cut, true) => continue,
        };
        if let Ok((client, _)) = accepted {
            relays.spawn(relay(client, upstream, is_cut.clone()));
        }
        // Reap finished relays as we go.
        while relays.try_join_next().is_some() {}
    }
}

async fn relay(mut client: TcpStream, upstream: SocketAddr, mut is_cut: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = until(&mut is_cut, true) => {
            // Stalled for good: both sockets held open, nothing passed.
            std::future::pending::<()>().await;
        }
    }
}

/// Waits until the proxy is `cut` or not; false if the proxy is gone. (Holds no borrow of the
/// value after it returns: a held one would block `cut` and `heal`.)
async fn until(is_cut: &mut watch::Receiver<bool>, cut: bool) -> bool {
    is_cut.wait_for(|now| *now == cut).await.is_ok()
}
