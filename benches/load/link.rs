//! An emulated mobile link: a loopback TCP proxy in front of the server that imposes a bandwidth per direction
//! and a round-trip time, and counts the bytes that cross it.
//!
//! One proxy is one phone's link: the bandwidth of each direction is shared by all the phone's connections
//! (as a radio link is), and each byte is delivered half a round trip after the link finished sending it
//! (a FIFO at the link's rate, then a delay line of RTT/2). A new connection waits one RTT before its first
//! byte moves (the TCP handshake). Not emulated: TCP slow start and congestion control, loss, TLS, radio
//! wake-up. Bytes are TCP payload (HTTP headers and bodies), not IP/TCP headers.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    time::Instant,
};

/// A link profile: bits per second each way and the round-trip time.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Profile {
    pub name: &'static str,
    pub down_bits_per_s: u64,
    pub up_bits_per_s: u64,
    pub rtt_ms: u64,
}

/// 4G as issue 24 states it: 20 Mbit/s down, 5 up, 60 ms.
pub const LTE: Profile = Profile {
    name: "4g",
    down_bits_per_s: 20_000_000,
    up_bits_per_s: 5_000_000,
    rtt_ms: 60,
};

/// 3G: 2 Mbit/s down (issue 24), 1 Mbit/s up (our choice; HSPA uplinks are typically 0.5-2 Mbit/s), 200 ms.
pub const THREE_G: Profile = Profile {
    name: "3g",
    down_bits_per_s: 2_000_000,
    up_bits_per_s: 1_000_000,
    rtt_ms: 200,
};

/// The largest piece the link schedules at once (about one TCP segment), so that a big read is paced
/// progressively rather than delivered whole after it was all "sent".
const PIECE: usize = 1448;
/// Pieces a direction may hold in flight before the sender is made to wait (about 185 KiB: more than the
/// bandwidth-delay product of both profiles, so the link, not this buffer, sets the pace).
const IN_FLIGHT_PIECES: usize = 128;

/// One direction of the link: when it is next free to send, shared by every connection of the phone.
struct Direction {
    bits_per_s: u64,
    free_at: Mutex<Instant>,
    bytes: AtomicU64,
}

impl Direction {
    fn new(bits_per_s: u64) -> Self {
        Direction {
            bits_per_s,
            free_at: Mutex::new(Instant::now()),
            bytes: AtomicU64::new(0),
        }
    }

    /// Queues `n` bytes on the link; returns when their last bit has left it.
    fn send(&self, n: usize) -> Instant {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let serialise = Duration::from_nanos(n as u64 * 8 * 1_000_000_000 / self.bits_per_s);
        let mut free = self.free_at.lock().unwrap_or_else(|e| e.into_inner());
        *free = (*free).max(Instant::now()) + serialise;
        *free
    }
}

/// A running proxy; stopped when dropped.
pub struct Link {
    pub profile: Profile,
    pub addr: SocketAddr,
    down: Arc<Direction>,
    up: Arc<Direction>,
    connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// Bytes and connections that crossed the link since it started (or since the last [`Link::take`]).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Wire {
    pub bytes_down: u64,
    pub bytes_up: u64,
    pub connections: u64,
}

impl Link {
    /// Listens on a free loopback port and forwards every connection to `upstream` through the link.
    pub async fn start(profile: Profile, upstream: SocketAddr) -> anyhow::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let down = Arc::new(Direction::new(profile.down_bits_per_s));
        let up = Arc::new(Direction::new(profile.up_bits_per_s));
        let connections = Arc::new(AtomicU64::new(0));
        let (d, u, c) = (down.clone(), up.clone(), connections.clone());
        let rtt = Duration::from_millis(profile.rtt_ms);
        let task = tokio::spawn(async move {
            while let Ok((phone, _)) = listener.accept().await {
                let _ = phone.set_nodelay(true);
                c.fetch_add(1, Ordering::Relaxed);
                let (d, u) = (d.clone(), u.clone());
                tokio::spawn(async move {
                    // The handshake: SYN and SYN-ACK cross the link before the phone's first byte can.
                    tokio::time::sleep(rtt).await;
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = server.set_nodelay(true);
                    let (phone_r, phone_w) = phone.into_split();
                    let (server_r, server_w) = server.into_split();
                    tokio::join!(
                        relay(phone_r, server_w, u, rtt / 2),
                        relay(server_r, phone_w, d, rtt / 2)
                    );
                });
            }
        });
        Ok(Link {
            profile,
            addr,
            down,
            up,
            connections,
            task,
        })
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What crossed the link since the last call, and resets the counts.
    pub fn take(&self) -> Wire {
        Wire {
            bytes_down: self.down.bytes.swap(0, Ordering::Relaxed),
            bytes_up: self.up.bytes.swap(0, Ordering::Relaxed),
            connections: self.connections.swap(0, Ordering::Relaxed),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Moves bytes from `from` to `to` through one direction of the link: each piece leaves the link at the link's
/// rate and arrives `one_way` later. Ends (closing `to`'s write side) when `from` ends.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Arc<Direction>,
    one_way: Duration,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT_PIECES);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for piece in buf[..n].chunks(PIECE) {
                let arrives = link.send(piece.len()) + one_way;
                if tx.send((arrives, piece.to_vec())).await.is_err() {
                    return;
                }
            }
        }
    };
    let writer = async move {
        // A piece taken from the queue that had not arrived yet when the previous write went out.
        let mut held: Option<(Instant, Vec<u8>)> = None;
        loop {
            let (arrives, mut bytes) = match held.take() {
                Some(piece) => piece,
                None => match rx.recv().await {
                    Some(piece) => piece,
                    None => break,
                },
            };
            tokio::time::sleep_until(arrives).await;
            // Everything else that has arrived by now goes in the same write.
            let now = Instant::now();
            while let Ok((next, more)) = rx.try_recv() {
                if next > now {
                    held = Some((next, more));
                    break;
                }
                bytes.extend_from_slice(&more);
            }
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
