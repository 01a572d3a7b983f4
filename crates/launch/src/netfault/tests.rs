//! The proxies against real sockets on loopback.

use std::io::{Read as _, Write as _};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use std::{io, thread};

use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep, timeout};

use super::connection::{hold_for, stream_rng};
use super::*;

const LOCALHOST: &str = "127.0.0.1:0";

fn any_port() -> SocketAddr {
    LOCALHOST.parse().expect("address")
}

async fn write_all(stream: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        stream.writable().await?;
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

async fn read_some(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read(buf) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            result => return result,
        }
    }
}

async fn read_exact(stream: &TcpStream, len: usize) -> io::Result<Vec<u8>> {
    let mut out = vec![0; len];
    let mut filled = 0;
    while filled < len {
        match read_some(stream, &mut out[filled..]).await? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => filled += n,
        }
    }
    Ok(out)
}

/// An echo server on loopback; runs until the test's runtime ends.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind(LOCALHOST).await.expect("bind echo server");
    let addr = listener.local_addr().expect("echo address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                stream.set_nodelay(true).expect("nodelay");
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n @ 1..) = read_some(&stream, &mut buf).await {
                    if write_all(&stream, &buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.expect("connect to proxy");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

async fn round_trip(stream: &TcpStream, message: &[u8]) -> Duration {
    let start = Instant::now();
    write_all(stream, message).await.expect("write");
    let echoed = timeout(Duration::from_secs(3), read_exact(stream, message.len()))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(echoed, message);
    start.elapsed()
}

/// True when `stream` is closed (EOF or error) within `within`.
async fn closes_within(stream: &TcpStream, within: Duration) -> bool {
    let mut buf = [0; 16];
    matches!(timeout(within, read_some(stream, &mut buf)).await, Ok(Ok(0) | Err(_)))
}

async fn shutdown_in_time(proxy: FaultProxy) {
    timeout(Duration::from_secs(2), proxy.shutdown()).await.expect("shutdown in time");
}

#[tokio::test]
async fn pass_through_forwards_a_mebibyte_intact() {
    let proxy = FaultProxy::start(any_port(), echo_server().await).await.expect("proxy");
    let client = Arc::new(connect(proxy.local_addr()).await);
    let data: Vec<u8> = (0..=250_u8).cycle().take(1 << 20).collect();
    // Write concurrently with reading: the echo would otherwise fill every buffer and stall.
    let writer = {
        let (client, data) = (Arc::clone(&client), data.clone());
        tokio::spawn(async move { write_all(&client, &data).await })
    };
    let echoed = timeout(Duration::from_secs(4), read_exact(&client, data.len()))
        .await
        .expect("echo in time")
        .expect("echo");
    writer.await.expect("writer task").expect("write");
    assert!(echoed == data, "echoed bytes differ");
    let stats = proxy.stats();
    assert_eq!(stats.connections_accepted, 1);
    assert_eq!(stats.connections_open, 1);
    assert_eq!(stats.bytes_to_upstream, 1 << 20);
    assert_eq!(stats.bytes_to_client, 1 << 20);
    shutdown_in_time(proxy).await;
    assert!(closes_within(&client, Duration::from_secs(1)).await, "shutdown closes clients");
}

#[tokio::test]
async fn delay_applies_per_direction_and_pipelines() {
    let proxy = FaultProxy::start(any_port(), echo_server().await).await.expect("proxy");
    let client = connect(proxy.local_addr()).await;
    round_trip(&client, b"warm").await;
    proxy.set(NetFault::Delay { latency: Duration::from_millis(100), jitter: Duration::ZERO });

    let took = round_trip(&client, b"ping").await;
    assert!(took >= Duration::from_millis(200), "round trip took only {took:?}");
    assert!(took < Duration::from_secs(1), "round trip took {took:?}");

    // 20 separate small writes, 10 ms apart: serial per-chunk delays would need > 2 s per
    // direction, pipelined ones ~200 ms of writing plus ~200 ms of delay.
    let start = Instant::now();
    for i in 0..20_u8 {
        write_all(&client, &[i]).await.expect("write");
        sleep(Duration::from_millis(10)).await;
    }
    let echoed = timeout(Duration::from_secs(3), read_exact(&client, 20))
        .await
        .expect("echo in time")
        .expect("echo");
    let took = start.elapsed();
    assert_eq!(echoed, (0..20).collect::<Vec<u8>>(), "order preserved");
    assert!(took >= Duration::from_millis(200), "took only {took:?}");
    assert!(took < Duration::from_secs(1), "not pipelined: took {took:?}");
    shutdown_in_time(proxy).await;
}

#[tokio::test]
async fn loss_stalls_chunks_by_probability() {
    let proxy = FaultProxy::start(any_port(), echo_server().await).await.expect("proxy");
    let client = connect(proxy.local_addr()).await;
    round_trip(&client, b"warm").await;

    let stall = Duration::from_millis(150);
    proxy.set(NetFault::Loss { probability: 1.0, stall, seed: 3 });
    for _ in 0..2 {
        let took = round_trip(&client, b"lost").await;
        assert!(took >= 2 * stall, "each direction stalls: took only {took:?}");
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }

    proxy.set(NetFault::Loss { probability: 0.0, stall, seed: 3 });
    let took = round_trip(&client, b"kept").await;
    assert!(took < Duration::from_millis(100), "no loss took {took:?}");
    shutdown_in_time(proxy).await;
}

#[test]
fn loss_decisions_are_reproducible_from_the_seed() {
    let decisions = |seed, stream, p| {
        let mut rng = stream_rng(seed, stream);
        (0..200).map(|_| rng.next_f64() < p).collect::<Vec<bool>>()
    };
    assert_eq!(decisions(42, 0, 0.3), decisions(42, 0, 0.3));
    assert_ne!(decisions(42, 0, 0.3), decisions(43, 0, 0.3));
    assert_ne!(decisions(42, 0, 0.3), decisions(42, 1, 0.3), "directions differ");
    assert!(decisions(42, 0, 0.0).iter().all(|&lost| !lost));
    assert!(decisions(42, 0, 1.0).iter().all(|&lost| lost));

    let loss = NetFault::Loss { probability: 0.25, stall: Duration::from_secs(1), seed: 7 };
    let mut rng = stream_rng(7, 0);
    let lost = (0..10_000).filter(|_| !hold_for(&loss, &mut rng).is_zero()).count();
    assert!((2_200..2_800).contains(&lost), "{lost} of 10000 lost at 25%");

    let mut rng = stream_rng(1, 0);
    let jitter = Duration::from_millis(50);
    let delay = NetFault::Delay { latency: Duration::from_millis(100), jitter };
    for _ in 0..100 {
        let hold = hold_for(&delay, &mut rng);
        assert!(hold >= Duration::from_millis(100) && hold <= Duration::from_millis(150));
    }
}

#[tokio::test]
async fn partition_holds_traffic_and_heals_without_loss() {
    let proxy = FaultProxy::start(any_port(), echo_server().await).await.expect("proxy");
    let established = connect(proxy.local_addr()).await;
    round_trip(&established, b"before").await;

    proxy.set(NetFault::Partition);
    write_all(&established, b"sent during the partition").await.expect("write");
    let mut buf = [0; 64];
    assert!(
        timeout(Duration::from_millis(300), read_some(&established, &mut buf)).await.is_err(),
        "nothing is delivered during a partition"
    );
    let newcomer = connect(proxy.local_addr()).await;
    write_all(&newcomer, b"hello").await.expect("write");
    assert!(
        timeout(Duration::from_millis(300), read_some(&newcomer, &mut buf)).await.is_err(),
        "a new connection gets no echo during a partition"
    );
    assert_eq!(proxy.stats().bytes_to_upstream, 6, "only the bytes sent before");

    proxy.set(NetFault::None);
    let held = timeout(Duration::from_secs(2), read_exact(&established, 25))
        .await
        .expect("held bytes arrive after healing")
        .expect("read");
    assert_eq!(held, b"sent during the partition");
    let held = timeout(Duration::from_secs(2), read_exact(&newcomer, 5))
        .await
        .expect("the new connection works after healing")
        .expect("read");
    assert_eq!(held, b"hello");
    round_trip(&newcomer, b"after").await;
    shutdown_in_time(proxy).await;
}

#[tokio::test]
async fn reset_closes_connections_until_cleared() {
    let proxy = FaultProxy::start(any_port(), echo_server().await).await.expect("proxy");
    let established = connect(proxy.local_addr()).await;
    round_trip(&established, b"before").await;

    proxy.set(NetFault::Reset);
    let mut buf = [0; 16];
    let read = timeout(Duration::from_secs(1), read_some(&established, &mut buf)).await;
    assert!(
        matches!(&read, Ok(Err(err)) if err.kind() == io::ErrorKind::ConnectionReset),
        "an established connection is reset: {read:?}"
    );
    // The kernel may complete the handshake before the proxy closes the connection.
    if let Ok(newcomer) = TcpStream::connect(proxy.local_addr()).await {
        assert!(
            closes_within(&newcomer, Duration::from_secs(1)).await,
            "a new connection is closed"
        );
    }

    proxy.set(NetFault::None);
    let after = connect(proxy.local_addr()).await;
    round_trip(&after, b"after").await;
    let deadline = Instant::now() + Duration::from_secs(1);
    while proxy.stats().connections_open != 1 && Instant::now() < deadline {
        sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(proxy.stats().connections_open, 1, "{:?}", proxy.stats());
    shutdown_in_time(proxy).await;
}

#[tokio::test]
async fn refused_upstream_closes_the_client() {
    let unused = TcpListener::bind(LOCALHOST).await.expect("bind");
    let upstream = unused.local_addr().expect("address");
    drop(unused);
    let proxy = FaultProxy::start(any_port(), upstream).await.expect("proxy");
    let client = connect(proxy.local_addr()).await;
    assert!(closes_within(&client, Duration::from_secs(1)).await);
    shutdown_in_time(proxy).await;
}

#[test]
fn background_proxy_serves_synchronous_callers() {
    let upstream = std::net::TcpListener::bind(LOCALHOST).expect("bind echo server");
    let upstream_addr = upstream.local_addr().expect("echo address");
    thread::spawn(move || {
        for stream in upstream.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let mut buf = [0; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });

    let proxy = BackgroundProxy::start(any_port(), upstream_addr).expect("proxy");
    let mut client = std::net::TcpStream::connect(proxy.local_addr()).expect("connect");
    client.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let mut buf = [0; 5];
    client.write_all(b"hello").expect("write");
    client.read_exact(&mut buf).expect("echo");
    assert_eq!(&buf, b"hello");

    proxy.set(NetFault::Partition);
    assert_eq!(proxy.fault(), NetFault::Partition);
    client.write_all(b"x").expect("write");
    client.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
    let err = client.read(&mut buf).expect_err("partitioned");
    assert!(matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut));

    proxy.set(NetFault::None);
    client.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    client.read_exact(&mut buf[..1]).expect("healed");
    assert_eq!(buf[0], b'x');
    // The proxy thread counts a write just after making it, so the client may be faster.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while proxy.stats().bytes_to_client < 6 && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let stats = proxy.stats();
    assert_eq!((stats.bytes_to_upstream, stats.bytes_to_client), (6, 6));
    assert_eq!(stats.connections_accepted, 1);

    proxy.shutdown();
    assert!(matches!(client.read(&mut buf), Ok(0) | Err(_)), "shutdown closes clients");
}

#[test]
fn specs_round_trip_through_display() {
    let ms = Duration::from_millis;
    let cases = [
        ("none", NetFault::None),
        ("delay=200ms", NetFault::Delay { latency: ms(200), jitter: Duration::ZERO }),
        ("delay=200ms~50ms", NetFault::Delay { latency: ms(200), jitter: ms(50) }),
        ("loss=5%", NetFault::Loss { probability: 0.05, stall: ms(200), seed: 0 }),
        ("loss=5%/300ms", NetFault::Loss { probability: 0.05, stall: ms(300), seed: 0 }),
        (
            "loss=100%/1s 500ms,seed=7",
            NetFault::Loss { probability: 1.0, stall: ms(1500), seed: 7 },
        ),
        ("partition", NetFault::Partition),
        ("reset", NetFault::Reset),
    ];
    for (spec, fault) in cases {
        assert_eq!(spec.parse::<NetFault>().expect(spec), fault, "{spec}");
        assert_eq!(fault.to_string(), spec);
    }
    for fault in [
        NetFault::Loss { probability: 0.07, stall: ms(10), seed: u64::MAX },
        NetFault::Loss { probability: 1.0 / 3.0, stall: ms(1), seed: 1 },
        NetFault::Delay { latency: Duration::from_nanos(1_500_000_001), jitter: ms(1) },
    ] {
        assert_eq!(fault.to_string().parse::<NetFault>().expect("parses"), fault);
    }
    assert_eq!(" loss = 0.5 ".parse::<NetFault>().expect("fraction").to_string(), "loss=50%");
}

#[test]
fn malformed_specs_name_the_bad_part() {
    for (spec, bad_part) in [
        ("delay=", "latency ``"),
        ("delay", "needs a value"),
        ("delay=fast", "`fast`"),
        ("delay=1s~", "jitter ``"),
        ("loss=150%", "`150%`"),
        ("loss=-1%", "`-1%`"),
        ("loss=NaN%", "`NaN%`"),
        ("loss=5%/soon", "stall `soon`"),
        ("loss=5%,seed=x", "seed `x`"),
        ("loss=5%,colour=red", "`colour=red`"),
        ("reset=1", "takes no value"),
        ("bogus", "`bogus`"),
    ] {
        let err = spec.parse::<NetFault>().expect_err(spec).to_string();
        assert!(err.contains(bad_part), "{spec}: {err}");
        assert!(err.contains(spec), "{spec}: {err}");
    }
}
