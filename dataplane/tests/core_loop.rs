//! The per-core loop on real sockets, for both backends: echo, large datagrams, sockets
//! bound and closed mid-run, wake-ups from other threads, timers, many sockets at once;
//! TCP streams: echo, connecting out, refused connects, peer close, the stream and send
//! caps.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use outdial_dataplane::core::{
    self, Backend, BackendUsed, Driver, Io, ListenerId, LoopConfig, LoopError, SocketId,
    StreamClosed, StreamId, WakeFd,
};
use outdial_dataplane::icmp::{IcmpError, Unreachable};

/// Both backends, each test runs on each.
const BACKENDS: [Backend; 2] = [Backend::IoUring, Backend::Epoll];
/// How long a test waits for anything before it fails (never a bound on speed).
const PATIENCE: Duration = Duration::from_secs(30);

fn config(backend: Backend) -> LoopConfig {
    LoopConfig {
        backend,
        ..LoopConfig::default()
    }
}

/// Wraps a test driver so the test thread can stop the loop through the [`WakeFd`].
struct Stoppable<D> {
    inner: D,
    stop: Arc<AtomicBool>,
    stopped: bool,
}

impl<D: Driver> Driver for Stoppable<D> {
    fn start(&mut self, io: &mut impl Io, now: Instant) -> std::io::Result<()> {
        self.inner.start(io, now)
    }
    fn handle_datagram(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        socket: SocketId,
        from: SocketAddr,
        data: &[u8],
    ) {
        self.inner.handle_datagram(io, now, socket, from, data);
    }
    fn handle_icmp_error(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        socket: SocketId,
        error: IcmpError,
        quoted: &[u8],
    ) {
        self.inner.handle_icmp_error(io, now, socket, error, quoted);
    }
    fn handle_stream_accepted(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        listener: ListenerId,
        stream: StreamId,
        peer: SocketAddr,
    ) {
        self.inner
            .handle_stream_accepted(io, now, listener, stream, peer);
    }
    fn handle_stream_connected(&mut self, io: &mut impl Io, now: Instant, stream: StreamId) {
        self.inner.handle_stream_connected(io, now, stream);
    }
    fn handle_stream_data(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        stream: StreamId,
        data: &[u8],
    ) {
        self.inner.handle_stream_data(io, now, stream, data);
    }
    fn handle_stream_closed(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        stream: StreamId,
        why: StreamClosed,
    ) {
        self.inner.handle_stream_closed(io, now, stream, why);
    }
    fn handle_timeout(&mut self, io: &mut impl Io, now: Instant) {
        self.inner.handle_timeout(io, now);
    }
    fn handle_wake(&mut self, io: &mut impl Io, now: Instant) {
        self.stopped |= self.stop.load(Ordering::Acquire);
        self.inner.handle_wake(io, now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
    fn should_stop(&self) -> bool {
        self.stopped || self.inner.should_stop()
    }
}

/// A loop running on its own thread.
struct Running<D> {
    wake: Arc<WakeFd>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(Result<BackendUsed, LoopError>, D)>,
}

impl<D: Driver + Send + 'static> Running<D> {
    fn spawn(config: LoopConfig, driver: D) -> Self {
        let wake = Arc::new(WakeFd::new().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let (loop_wake, loop_stop) = (Arc::clone(&wake), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut driver = Stoppable {
                inner: driver,
                stop: loop_stop,
                stopped: false,
            };
            let result = core::run(&config, &loop_wake, &mut driver);
            (result, driver.inner)
        });
        Self { wake, stop, thread }
    }

    /// Ask the loop to stop and return what it ran on and the driver.
    fn stop(self) -> (BackendUsed, D) {
        self.stop.store(true, Ordering::Release);
        self.wake.notify();
        self.join()
    }

    /// Wait for the loop to stop by itself; after [`PATIENCE`], stop it (the test's
    /// assertions on the driver then fail).
    fn join(self) -> (BackendUsed, D) {
        let Self { wake, stop, thread } = self;
        let deadline = Instant::now() + PATIENCE;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Release);
        wake.notify();
        let (result, driver) = thread.join().expect("the loop thread panicked");
        (result.expect("the loop failed"), driver)
    }
}

fn expect_backend(backend: Backend, used: BackendUsed) {
    let expected = match backend {
        Backend::Epoll => BackendUsed::Epoll,
        Backend::IoUring | Backend::Auto => BackendUsed::IoUring,
    };
    assert_eq!(used, expected);
}

/// Echoes every datagram back to its sender from the socket it arrived on.
struct Echo {
    bind: SocketAddr,
    bound: mpsc::Sender<SocketAddr>,
    echoed: usize,
}

impl Echo {
    fn new(bind: &str) -> (Self, mpsc::Receiver<SocketAddr>) {
        let (bound, rx) = mpsc::channel();
        (
            Self {
                bind: bind.parse().unwrap(),
                bound,
                echoed: 0,
            },
            rx,
        )
    }
}

impl Driver for Echo {
    fn start(&mut self, io: &mut impl Io, _now: Instant) -> std::io::Result<()> {
        let (_, local) = io.bind(self.bind)?;
        self.bound.send(local).unwrap();
        Ok(())
    }
    fn handle_datagram(
        &mut self,
        io: &mut impl Io,
        _now: Instant,
        socket: SocketId,
        from: SocketAddr,
        data: &[u8],
    ) {
        self.echoed += 1;
        io.send(socket, from, data);
    }
    fn handle_timeout(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn handle_wake(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn should_stop(&self) -> bool {
        false
    }
}

/// A client socket on the loopback of `server`'s family.
fn client_for(server: SocketAddr) -> UdpSocket {
    let any = if server.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let socket = UdpSocket::bind(any).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
}

/// The payload for sequence number `seq`: the number, then bytes derived from it.
fn payload(seq: u32, len: usize) -> Vec<u8> {
    let mut data = seq.to_be_bytes().to_vec();
    data.extend(
        (0..len.saturating_sub(4)).map(|i| (i as u32).wrapping_mul(31).wrapping_add(seq) as u8),
    );
    data
}

#[test]
fn echoes_ten_thousand_datagrams_intact() {
    const COUNT: u32 = 10_000;
    const WINDOW: u32 = 64;
    for backend in BACKENDS {
        let (driver, bound) = Echo::new("127.0.0.1:0");
        let running = Running::spawn(config(backend), driver);
        let server = bound.recv_timeout(PATIENCE).unwrap();
        let client = client_for(server);
        let mut seen = vec![false; COUNT as usize];
        let (mut sent, mut received) = (0u32, 0u32);
        let mut buf = [0u8; 2048];
        while received < COUNT {
            while sent < COUNT && sent - received < WINDOW {
                client
                    .send_to(&payload(sent, 4 + (sent as usize % 200)), server)
                    .unwrap();
                sent += 1;
            }
            let (len, from) = client
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("{backend:?}: {received} of {COUNT} echoed: {e}"));
            assert_eq!(from, server);
            let seq = u32::from_be_bytes(buf[..4].try_into().unwrap());
            assert!(seq < COUNT, "{backend:?}: bogus sequence {seq}");
            assert_eq!(
                &buf[..len],
                payload(seq, 4 + (seq as usize % 200)),
                "{backend:?}: datagram {seq} damaged"
            );
            assert!(
                !seen[seq as usize],
                "{backend:?}: datagram {seq} echoed twice"
            );
            seen[seq as usize] = true;
            received += 1;
        }
        let (used, driver) = running.stop();
        expect_backend(backend, used);
        assert_eq!(driver.echoed, COUNT as usize);
    }
}

#[test]
fn echoes_datagrams_up_to_nine_thousand_bytes_and_beyond() {
    for backend in BACKENDS {
        let (driver, bound) = Echo::new("127.0.0.1:0");
        let running = Running::spawn(config(backend), driver);
        let server = bound.recv_timeout(PATIENCE).unwrap();
        let client = client_for(server);
        let mut buf = vec![0u8; 70_000];
        for (seq, len) in [1usize, 4, 512, 1500, 4096, 8999, 9000, 30_000, 65_507]
            .into_iter()
            .enumerate()
        {
            let data = payload(seq as u32, len.max(4))[..len].to_vec();
            client.send_to(&data, server).unwrap();
            let (got, _) = client
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("{backend:?}: {len} bytes: {e}"));
            assert_eq!(
                &buf[..got],
                &data[..],
                "{backend:?}: {len}-byte datagram damaged"
            );
        }
        running.stop();
    }
}

/// A zero-length UDP datagram is legal; it must reach the driver as an empty payload and
/// must not stop the socket from receiving what follows.
#[test]
fn an_empty_datagram_is_delivered_and_receiving_goes_on() {
    for backend in BACKENDS {
        let (driver, bound) = Echo::new("127.0.0.1:0");
        let running = Running::spawn(config(backend), driver);
        let server = bound.recv_timeout(PATIENCE).unwrap();
        let client = client_for(server);
        let mut buf = vec![0u8; 2048];
        for round in 0..3u32 {
            client.send_to(&[], server).unwrap();
            let (got, _) = client
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("{backend:?}: empty datagram {round} not echoed: {e}"));
            assert_eq!(
                got, 0,
                "{backend:?}: the echo of an empty datagram is empty"
            );
            let data = payload(round, 64);
            client.send_to(&data, server).unwrap();
            let (got, _) = client.recv_from(&mut buf).unwrap_or_else(|e| {
                panic!("{backend:?}: receiving stopped after an empty datagram: {e}")
            });
            assert_eq!(&buf[..got], &data[..], "{backend:?}");
        }
        running.stop();
    }
}

#[test]
fn drops_datagrams_longer_than_max_datagram() {
    for backend in BACKENDS {
        let (driver, bound) = Echo::new("127.0.0.1:0");
        let config = LoopConfig {
            max_datagram: 9000,
            ..config(backend)
        };
        let running = Running::spawn(config, driver);
        let server = bound.recv_timeout(PATIENCE).unwrap();
        let client = client_for(server);
        let mut buf = vec![0u8; 16_000];
        // The too-long one is sent first; the next echo must be the 9000-byte one.
        client.send_to(&payload(1, 9001), server).unwrap();
        client.send_to(&payload(2, 9000), server).unwrap();
        let (got, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..got], &payload(2, 9000)[..], "{backend:?}");
        let (_, driver) = running.stop();
        assert_eq!(
            driver.echoed, 1,
            "{backend:?}: the oversized datagram reached the driver"
        );
    }
}

#[test]
fn echoes_over_ipv6() {
    for backend in BACKENDS {
        let (driver, bound) = Echo::new("[::1]:0");
        let running = Running::spawn(config(backend), driver);
        let server = bound.recv_timeout(PATIENCE).unwrap();
        assert!(server.is_ipv6());
        let client = client_for(server);
        let mut buf = [0u8; 256];
        for seq in 0..100 {
            client.send_to(&payload(seq, 100), server).unwrap();
            let (got, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(from, server);
            assert_eq!(&buf[..got], &payload(seq, 100)[..], "{backend:?}");
        }
        running.stop();
    }
}

/// On "open" binds a second socket and replies with its port; echoes on it; on "close"
/// closes it and replies "closed".
struct SecondSocket {
    first: Option<SocketId>,
    second: Option<SocketId>,
    bound: mpsc::Sender<SocketAddr>,
}

impl Driver for SecondSocket {
    fn start(&mut self, io: &mut impl Io, _now: Instant) -> std::io::Result<()> {
        let (id, local) = io.bind("127.0.0.1:0".parse().unwrap())?;
        self.first = Some(id);
        self.bound.send(local).unwrap();
        Ok(())
    }
    fn handle_datagram(
        &mut self,
        io: &mut impl Io,
        _now: Instant,
        socket: SocketId,
        from: SocketAddr,
        data: &[u8],
    ) {
        if Some(socket) == self.second {
            io.send(socket, from, data);
            return;
        }
        match data {
            b"open" => {
                let (id, local) = io.bind("127.0.0.1:0".parse().unwrap()).unwrap();
                self.second = Some(id);
                io.send(socket, from, local.port().to_string().as_bytes());
            }
            b"close" => {
                if let Some(second) = self.second.take() {
                    io.close(second);
                    // Closing twice, and sending on the closed socket, are harmless.
                    io.close(second);
                    io.send(second, from, b"lost");
                }
                io.send(socket, from, b"closed");
            }
            _ => io.send(socket, from, data),
        }
    }
    fn handle_timeout(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn handle_wake(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn should_stop(&self) -> bool {
        false
    }
}

#[test]
fn binds_and_closes_a_socket_mid_run() {
    for backend in BACKENDS {
        let (bound, bound_rx) = mpsc::channel();
        let driver = SecondSocket {
            first: None,
            second: None,
            bound,
        };
        let running = Running::spawn(config(backend), driver);
        let first = bound_rx.recv_timeout(PATIENCE).unwrap();
        let client = client_for(first);
        let mut buf = [0u8; 64];

        client.send_to(b"open", first).unwrap();
        let (len, _) = client.recv_from(&mut buf).unwrap();
        let port: u16 = std::str::from_utf8(&buf[..len]).unwrap().parse().unwrap();
        let second = SocketAddr::from(([127, 0, 0, 1], port));
        assert_ne!(second, first);
        client.send_to(b"via second", second).unwrap();
        let (len, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..len], from),
            (&b"via second"[..], second),
            "{backend:?}"
        );

        client.send_to(b"close", first).unwrap();
        let (len, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"closed", "{backend:?}");
        // The port is free once the loop has closed the fd.
        let deadline = Instant::now() + PATIENCE;
        let rebound = loop {
            match UdpSocket::bind(second) {
                Ok(socket) => break socket,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("{backend:?}: port {port} still bound after close: {e}"),
            }
        };
        drop(rebound);
        // The first socket still works.
        client.send_to(b"still here", first).unwrap();
        let (len, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"still here", "{backend:?}");
        running.stop();
    }
}

/// Takes commands from a queue other threads fill, when woken.
struct Commands {
    queue: Arc<Mutex<VecDeque<u32>>>,
    seen: Vec<u32>,
    wakes: usize,
    done: bool,
}

impl Driver for Commands {
    fn start(&mut self, _io: &mut impl Io, _now: Instant) -> std::io::Result<()> {
        Ok(())
    }
    fn handle_datagram(
        &mut self,
        _: &mut impl Io,
        _: Instant,
        _: SocketId,
        _: SocketAddr,
        _: &[u8],
    ) {
    }
    fn handle_timeout(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn handle_wake(&mut self, _io: &mut impl Io, _now: Instant) {
        self.wakes += 1;
        while let Some(command) = self.queue.lock().unwrap().pop_front() {
            self.done |= command == u32::MAX;
            self.seen.push(command);
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn should_stop(&self) -> bool {
        self.done
    }
}

#[test]
fn wake_from_another_thread_runs_handle_wake_and_stops_the_loop() {
    for backend in BACKENDS {
        let queue = Arc::new(Mutex::new(VecDeque::new()));
        let driver = Commands {
            queue: Arc::clone(&queue),
            seen: Vec::new(),
            wakes: 0,
            done: false,
        };
        let running = Running::spawn(config(backend), driver);
        let wake = Arc::clone(&running.wake);
        let producer = std::thread::spawn(move || {
            for command in (1..=100).chain([u32::MAX]) {
                queue.lock().unwrap().push_back(command);
                wake.notify();
                if command % 10 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        producer.join().unwrap();
        let (_, driver) = running.join();
        let expected: Vec<u32> = (1..=100).chain([u32::MAX]).collect();
        assert_eq!(driver.seen, expected, "{backend:?}");
        assert!(driver.wakes >= 1);
    }
}

/// Asks for five timeouts, 10 ms apart, and stops after the last.
struct Timers {
    deadlines: Vec<Instant>,
    fired: Vec<(Instant, Instant)>,
    calls: usize,
}

impl Driver for Timers {
    fn start(&mut self, _io: &mut impl Io, now: Instant) -> std::io::Result<()> {
        self.deadlines = (1..=5)
            .map(|n| now + Duration::from_millis(10 * n))
            .collect();
        Ok(())
    }
    fn handle_datagram(
        &mut self,
        _: &mut impl Io,
        _: Instant,
        _: SocketId,
        _: SocketAddr,
        _: &[u8],
    ) {
    }
    fn handle_timeout(&mut self, _io: &mut impl Io, now: Instant) {
        self.calls += 1;
        while let Some(&deadline) = self.deadlines.get(self.fired.len()) {
            if deadline > now {
                break;
            }
            self.fired.push((deadline, now));
        }
    }
    fn handle_wake(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.get(self.fired.len()).copied()
    }
    fn should_stop(&self) -> bool {
        !self.deadlines.is_empty() && self.fired.len() == self.deadlines.len()
    }
}

#[test]
fn timeouts_fire_in_order_and_never_early() {
    for backend in BACKENDS {
        let driver = Timers {
            deadlines: Vec::new(),
            fired: Vec::new(),
            calls: 0,
        };
        let (_, driver) = Running::spawn(config(backend), driver).join();
        assert_eq!(
            driver.fired.len(),
            5,
            "{backend:?}: timeouts fired: {:?}",
            driver.fired
        );
        for (&(deadline, now), expected) in driver.fired.iter().zip(&driver.deadlines) {
            assert_eq!(deadline, *expected);
            assert!(
                now >= deadline,
                "{backend:?}: timeout handled before its deadline"
            );
        }
        assert!(driver.fired.windows(2).all(|pair| pair[0].1 <= pair[1].1));
        assert!(driver.calls >= 1);
    }
}

/// Binds `count` sockets and stops once each has received `per_socket` datagrams. Its
/// first wake-up blocks the loop until `gate` opens, so datagrams pile up meanwhile.
struct ManySockets {
    gate: Option<mpsc::Receiver<()>>,
    count: usize,
    per_socket: usize,
    bound: mpsc::Sender<Vec<SocketAddr>>,
    ids: Vec<SocketId>,
    received: Vec<usize>,
    total: usize,
}

impl Driver for ManySockets {
    fn start(&mut self, io: &mut impl Io, _now: Instant) -> std::io::Result<()> {
        let mut addrs = Vec::new();
        for _ in 0..self.count {
            let (id, local) = io.bind("127.0.0.1:0".parse().unwrap())?;
            self.ids.push(id);
            addrs.push(local);
        }
        self.received = vec![0; self.count];
        self.bound.send(addrs).unwrap();
        Ok(())
    }
    fn handle_datagram(
        &mut self,
        _: &mut impl Io,
        _: Instant,
        socket: SocketId,
        _: SocketAddr,
        data: &[u8],
    ) {
        let index = self
            .ids
            .iter()
            .position(|&id| id == socket)
            .expect("datagram on an unknown socket");
        assert_eq!(
            data,
            &payload(index as u32, 64)[..],
            "datagram on the wrong socket"
        );
        self.received[index] += 1;
        self.total += 1;
    }
    fn handle_timeout(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn handle_wake(&mut self, _io: &mut impl Io, _now: Instant) {
        if let Some(gate) = self.gate.take() {
            gate.recv_timeout(PATIENCE).unwrap();
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn should_stop(&self) -> bool {
        self.count > 0 && self.total == self.count * self.per_socket
    }
}

#[test]
fn five_hundred_sockets_receive_at_once() {
    // 4,000 datagrams wait when the loop looks: more than the io_uring receive buffers, so
    // receives end with ENOBUFS and must be re-armed.
    const SOCKETS: usize = 500;
    const PER_SOCKET: usize = 8;
    for backend in BACKENDS {
        let (bound, bound_rx) = mpsc::channel();
        let (open_gate, gate) = mpsc::channel();
        let driver = ManySockets {
            gate: Some(gate),
            count: SOCKETS,
            per_socket: PER_SOCKET,
            bound,
            ids: Vec::new(),
            received: Vec::new(),
            total: 0,
        };
        let running = Running::spawn(config(backend), driver);
        let addrs = bound_rx.recv_timeout(PATIENCE).unwrap();
        running.wake.notify(); // The loop now waits for the gate.
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..PER_SOCKET {
            for (index, addr) in addrs.iter().enumerate() {
                client.send_to(&payload(index as u32, 64), addr).unwrap();
            }
        }
        open_gate.send(()).unwrap();
        let (_, driver) = running.join();
        assert_eq!(driver.total, SOCKETS * PER_SOCKET, "{backend:?}");
        assert!(
            driver.received.iter().all(|&n| n == PER_SOCKET),
            "{backend:?}: {:?}",
            driver.received
        );
    }
}

/// On start, sends `count` datagrams from one of its sockets to another in a single call
/// (more than the io_uring send slab holds, and more than its receive buffers), and stops
/// once all have arrived.
struct Burst {
    count: usize,
    receiver: Option<SocketId>,
    received: usize,
    in_order: bool,
}

impl Driver for Burst {
    fn start(&mut self, io: &mut impl Io, _now: Instant) -> std::io::Result<()> {
        let (sender, _) = io.bind("127.0.0.1:0".parse().unwrap())?;
        let (receiver, target) = io.bind("127.0.0.1:0".parse().unwrap())?;
        self.receiver = Some(receiver);
        for seq in 0..self.count {
            io.send(sender, target, &payload(seq as u32, 100));
        }
        Ok(())
    }
    fn handle_datagram(
        &mut self,
        _: &mut impl Io,
        _: Instant,
        socket: SocketId,
        _: SocketAddr,
        data: &[u8],
    ) {
        assert_eq!(Some(socket), self.receiver);
        self.in_order &= data == &payload(self.received as u32, 100)[..];
        self.received += 1;
    }
    fn handle_timeout(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn handle_wake(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn should_stop(&self) -> bool {
        self.received == self.count
    }
}

#[test]
fn a_burst_larger_than_the_send_slab_and_receive_ring_arrives_whole() {
    for backend in BACKENDS {
        let driver = Burst {
            count: 3000,
            receiver: None,
            received: 0,
            in_order: true,
        };
        let (_, driver) = Running::spawn(config(backend), driver).join();
        assert_eq!(driver.received, 3000, "{backend:?}");
        // One socket to one socket over loopback keeps order.
        assert!(
            driver.in_order,
            "{backend:?}: datagrams reordered or damaged"
        );
    }
}

/// Stops as soon as it starts.
struct StopAtOnce;

impl Driver for StopAtOnce {
    fn start(&mut self, _io: &mut impl Io, _now: Instant) -> std::io::Result<()> {
        Ok(())
    }
    fn handle_datagram(
        &mut self,
        _: &mut impl Io,
        _: Instant,
        _: SocketId,
        _: SocketAddr,
        _: &[u8],
    ) {
    }
    fn handle_timeout(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn handle_wake(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn should_stop(&self) -> bool {
        true
    }
}

#[test]
fn auto_picks_io_uring_on_this_machine() {
    core::probe_io_uring().expect("io_uring should be usable on the test machine");
    let wake = WakeFd::new().unwrap();
    let used = core::run(&config(Backend::Auto), &wake, &mut StopAtOnce).unwrap();
    assert_eq!(used, BackendUsed::IoUring);
    let used = core::run(&config(Backend::Epoll), &wake, &mut StopAtOnce).unwrap();
    assert_eq!(used, BackendUsed::Epoll);
}

#[test]
fn pinning_to_a_cpu_works_and_a_missing_cpu_is_an_error() {
    let wake = WakeFd::new().unwrap();
    let pinned = LoopConfig {
        pin_to_cpu: Some(0),
        ..config(Backend::Epoll)
    };
    std::thread::scope(|scope| {
        scope.spawn(|| core::run(&pinned, &wake, &mut StopAtOnce).unwrap());
    });
    // 1023 fits a cpu_set_t but is not on this machine; 100,000 does not fit at all.
    for cpu in [1023, 100_000] {
        let missing = LoopConfig {
            pin_to_cpu: Some(cpu),
            ..config(Backend::Epoll)
        };
        let error = core::run(&missing, &wake, &mut StopAtOnce).unwrap_err();
        assert!(
            matches!(error, LoopError::Pin { cpu: c } if c == cpu),
            "{error}"
        );
        assert!(error.to_string().contains("pin = false"), "{error}");
    }
}

#[test]
fn a_driver_that_cannot_bind_fails_the_loop_with_advice() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    for backend in BACKENDS {
        let (mut driver, _bound) = Echo::new("127.0.0.1:0");
        driver.bind = addr;
        let wake = WakeFd::new().unwrap();
        let error = core::run(&config(backend), &wake, &mut driver).unwrap_err();
        assert!(
            matches!(error, LoopError::DriverStart(_)),
            "{backend:?}: {error}"
        );
        assert!(error.to_string().contains("address"), "{error}");
    }
}

/// Answers any datagram with one reply of each of `sizes` bytes.
struct Replies {
    sizes: Vec<usize>,
    bound: mpsc::Sender<SocketAddr>,
}

impl Driver for Replies {
    fn start(&mut self, io: &mut impl Io, _now: Instant) -> std::io::Result<()> {
        let (_, local) = io.bind("127.0.0.1:0".parse().unwrap())?;
        self.bound.send(local).unwrap();
        Ok(())
    }
    fn handle_datagram(
        &mut self,
        io: &mut impl Io,
        _: Instant,
        socket: SocketId,
        from: SocketAddr,
        _: &[u8],
    ) {
        for &size in &self.sizes {
            io.send(socket, from, &payload(size as u32, size));
        }
    }
    fn handle_timeout(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn handle_wake(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn should_stop(&self) -> bool {
        false
    }
}

#[test]
fn sends_longer_than_max_datagram_are_dropped() {
    for backend in BACKENDS {
        let (bound, bound_rx) = mpsc::channel();
        let driver = Replies {
            sizes: vec![1001, 1000],
            bound,
        };
        let config = LoopConfig {
            max_datagram: 1000,
            ..config(backend)
        };
        let running = Running::spawn(config, driver);
        let server = bound_rx.recv_timeout(PATIENCE).unwrap();
        let client = client_for(server);
        client.send_to(b"go", server).unwrap();
        let mut buf = [0u8; 2048];
        let (got, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..got], &payload(1000, 1000)[..], "{backend:?}");
        running.stop();
    }
}

/// Sends to a port nobody listens on; records the ICMP error the loop reports, then checks
/// that the socket still receives.
struct DeadPeer {
    dead: SocketAddr,
    socket: Option<(SocketId, SocketAddr)>,
    errors: Vec<(SocketId, IcmpError, Vec<u8>)>,
    alive: bool,
}

impl Driver for DeadPeer {
    fn start(&mut self, io: &mut impl Io, _now: Instant) -> std::io::Result<()> {
        let (id, local) = io.bind("127.0.0.1:0".parse().unwrap())?;
        self.socket = Some((id, local));
        io.send(
            id,
            self.dead,
            b"INVITE sip:dead SIP/2.0\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKdead\r\n",
        );
        Ok(())
    }
    fn handle_datagram(
        &mut self,
        _io: &mut impl Io,
        _now: Instant,
        _socket: SocketId,
        _from: SocketAddr,
        data: &[u8],
    ) {
        self.alive |= data == b"alive";
    }
    fn handle_icmp_error(
        &mut self,
        io: &mut impl Io,
        _now: Instant,
        socket: SocketId,
        error: IcmpError,
        quoted: &[u8],
    ) {
        self.errors.push((socket, error, quoted.to_vec()));
        if let Some((id, local)) = self.socket {
            io.send(id, local, b"alive");
        }
    }
    fn handle_timeout(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn handle_wake(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn should_stop(&self) -> bool {
        !self.errors.is_empty() && self.alive
    }
}

#[test]
fn an_icmp_port_unreachable_reaches_the_driver_and_receiving_goes_on() {
    for backend in BACKENDS {
        let dead = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let driver = DeadPeer {
            dead,
            socket: None,
            errors: Vec::new(),
            alive: false,
        };
        let (used, driver) = Running::spawn(config(backend), driver).join();
        expect_backend(backend, used);
        let (socket, _) = driver.socket.expect("bound");
        assert_eq!(driver.errors.len(), 1, "{backend:?}: {:?}", driver.errors);
        let (from, error, quoted) = &driver.errors[0];
        assert_eq!(*from, socket);
        assert_eq!((error.destination, error.reason), (dead, Unreachable::Port));
        assert!(
            quoted.ends_with(b"branch=z9hG4bKdead\r\n"),
            "{backend:?}: {quoted:?}"
        );
        assert!(driver.alive, "{backend:?}: the socket still receives");
    }
}

/// What a TCP test driver saw, as it happened.
#[derive(Debug, Eq, PartialEq)]
enum TcpEvent {
    Listening(SocketAddr),
    Accepted(StreamId, SocketAddr),
    Closed(StreamId, StreamClosed),
}

/// Listens on `bind` (and binds UDP on the same port), echoes every byte back on the
/// stream it came from, and stops once `stop_after` streams have closed.
struct TcpEcho {
    bind: SocketAddr,
    events: mpsc::Sender<TcpEvent>,
    listener: Option<ListenerId>,
    accepted: Vec<StreamId>,
    closed: Vec<(StreamId, StreamClosed)>,
    echoed: usize,
    stop_after: usize,
}

impl TcpEcho {
    fn new(bind: &str, stop_after: usize) -> (Self, mpsc::Receiver<TcpEvent>) {
        let (events, rx) = mpsc::channel();
        let driver = Self {
            bind: bind.parse().unwrap(),
            events,
            listener: None,
            accepted: Vec::new(),
            closed: Vec::new(),
            echoed: 0,
            stop_after,
        };
        (driver, rx)
    }
}

impl Driver for TcpEcho {
    fn start(&mut self, io: &mut impl Io, _now: Instant) -> std::io::Result<()> {
        let (listener, local) = io.listen(self.bind)?;
        // SIP listens on one port for UDP and TCP.
        io.bind(local)?;
        self.listener = Some(listener);
        self.events.send(TcpEvent::Listening(local)).unwrap();
        Ok(())
    }
    fn handle_datagram(
        &mut self,
        _: &mut impl Io,
        _: Instant,
        _: SocketId,
        _: SocketAddr,
        _: &[u8],
    ) {
    }
    fn handle_stream_accepted(
        &mut self,
        _io: &mut impl Io,
        _now: Instant,
        listener: ListenerId,
        stream: StreamId,
        peer: SocketAddr,
    ) {
        assert_eq!(Some(listener), self.listener);
        assert!(
            !self.accepted.contains(&stream),
            "stream id {stream:?} reused"
        );
        self.accepted.push(stream);
        let _ = self.events.send(TcpEvent::Accepted(stream, peer));
    }
    fn handle_stream_data(
        &mut self,
        io: &mut impl Io,
        _now: Instant,
        stream: StreamId,
        data: &[u8],
    ) {
        assert!(
            self.accepted.contains(&stream),
            "data on unknown stream {stream:?}"
        );
        assert!(!data.is_empty());
        self.echoed += data.len();
        assert!(io.send_stream(stream, data), "echo on {stream:?} refused");
    }
    fn handle_stream_closed(
        &mut self,
        io: &mut impl Io,
        _now: Instant,
        stream: StreamId,
        why: StreamClosed,
    ) {
        assert!(
            !self.closed.iter().any(|&(id, _)| id == stream),
            "{stream:?} reported closed twice"
        );
        self.closed.push((stream, why));
        // The id is dead: sending on it is refused, closing it is harmless.
        assert!(!io.send_stream(stream, b"late"));
        io.close_stream(stream);
        let _ = self.events.send(TcpEvent::Closed(stream, why));
    }
    fn handle_timeout(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn handle_wake(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn should_stop(&self) -> bool {
        self.stop_after > 0 && self.closed.len() >= self.stop_after
    }
}

/// The next event, or a failure naming what was awaited.
fn next_event(events: &mpsc::Receiver<TcpEvent>, what: &str) -> TcpEvent {
    events
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

fn listening(events: &mpsc::Receiver<TcpEvent>) -> SocketAddr {
    match next_event(events, "the listener") {
        TcpEvent::Listening(addr) => addr,
        other => panic!("expected Listening, got {other:?}"),
    }
}

/// A TCP client with read and write timeouts, so a broken loop fails the test.
fn tcp_client(server: SocketAddr) -> TcpStream {
    let client = TcpStream::connect(server).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.set_write_timeout(Some(PATIENCE)).unwrap();
    client
}

/// `len` bytes derived from `seed`, so streams and offsets are told apart.
fn stream_bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(131)
                .wrapping_add(u32::from(seed) * 7) as u8
        })
        .collect()
}

/// Reads until the peer closes; true if it closed (EOF or reset) rather than timed out.
fn reads_to_the_end(client: &mut TcpStream) -> bool {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match client.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn tcp_echo_returns_odd_sized_pieces_in_order_and_reports_the_peer_closing() {
    // Odd sizes, some beyond the loop's 64 KiB read chunk, about 1.1 MB per client.
    const PIECES: [usize; 10] = [1, 2, 3, 7, 13, 1500, 4095, 65_537, 100_001, 9];
    const CLIENTS: usize = 3;
    for backend in BACKENDS {
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let (driver, events) = TcpEcho::new(bind, CLIENTS);
            let running = Running::spawn(config(backend), driver);
            let server = listening(&events);
            let clients: Vec<_> = (0..CLIENTS as u8)
                .map(|seed| {
                    std::thread::spawn(move || {
                        let mut client = tcp_client(server);
                        let data = stream_bytes(seed, PIECES.iter().sum::<usize>() * 5);
                        let mut writer = client.try_clone().unwrap();
                        let sent = data.clone();
                        let writing = std::thread::spawn(move || {
                            let mut at = 0;
                            for len in PIECES.iter().cycle().take(PIECES.len() * 5) {
                                writer.write_all(&sent[at..at + len]).unwrap();
                                at += len;
                            }
                        });
                        let mut echoed = vec![0u8; data.len()];
                        client.read_exact(&mut echoed).unwrap();
                        writing.join().unwrap();
                        assert!(echoed == data, "client {seed}: echo damaged or reordered");
                        client.local_addr().unwrap()
                    })
                })
                .collect();
            let mut locals = Vec::new();
            for client in clients {
                locals.push(client.join().unwrap());
            }
            // The clients have closed; each stream reports the peer's EOF.
            let (used, driver) = running.join();
            expect_backend(backend, used);
            assert_eq!(driver.accepted.len(), CLIENTS, "{backend:?} {bind}");
            assert_eq!(driver.closed.len(), CLIENTS, "{backend:?} {bind}");
            for (stream, why) in &driver.closed {
                assert!(driver.accepted.contains(stream));
                assert_eq!(*why, StreamClosed::Peer, "{backend:?} {bind}");
            }
            let total = PIECES.iter().sum::<usize>() * 5 * CLIENTS;
            assert_eq!(driver.echoed, total, "{backend:?} {bind}");
            let mut peers: Vec<SocketAddr> = events
                .try_iter()
                .filter_map(|event| match event {
                    TcpEvent::Accepted(_, peer) => Some(peer),
                    _ => None,
                })
                .collect();
            peers.sort();
            locals.sort();
            assert_eq!(peers, locals, "{backend:?} {bind}: accepted peers");
        }
    }
}

/// Connects to `to` on start and queues its greeting before the connect completes; on
/// connecting sends the rest; closes the stream once the reply has arrived whole.
struct Dialer {
    to: SocketAddr,
    stream: Option<StreamId>,
    log: Vec<String>,
    reply: Vec<u8>,
    expected_reply: &'static [u8],
    closed: Vec<(StreamId, StreamClosed)>,
    connect_error: Option<ErrorKind>,
    done: bool,
}

impl Dialer {
    fn new(to: SocketAddr, expected_reply: &'static [u8]) -> Self {
        Self {
            to,
            stream: None,
            log: Vec::new(),
            reply: Vec::new(),
            expected_reply,
            closed: Vec::new(),
            connect_error: None,
            done: false,
        }
    }
}

impl Driver for Dialer {
    fn start(&mut self, io: &mut impl Io, _now: Instant) -> std::io::Result<()> {
        match io.connect(self.to) {
            Ok(stream) => {
                self.stream = Some(stream);
                assert!(io.send_stream(stream, b"hello "), "queueing before connect");
            }
            Err(error) => {
                self.connect_error = Some(error.kind());
                self.done = true;
            }
        }
        Ok(())
    }
    fn handle_datagram(
        &mut self,
        _: &mut impl Io,
        _: Instant,
        _: SocketId,
        _: SocketAddr,
        _: &[u8],
    ) {
    }
    fn handle_stream_connected(&mut self, io: &mut impl Io, _now: Instant, stream: StreamId) {
        assert_eq!(Some(stream), self.stream);
        self.log.push("connected".into());
        assert!(io.send_stream(stream, b"world\n"));
    }
    fn handle_stream_data(
        &mut self,
        io: &mut impl Io,
        _now: Instant,
        stream: StreamId,
        data: &[u8],
    ) {
        assert_eq!(Some(stream), self.stream);
        self.log.push(format!("data {}", data.len()));
        self.reply.extend_from_slice(data);
        if self.reply.len() >= self.expected_reply.len() {
            // Closing from inside the callback; the id is dead at once.
            io.close_stream(stream);
            assert!(!io.send_stream(stream, b"after close"));
            self.done = true;
        }
    }
    fn handle_stream_closed(
        &mut self,
        _io: &mut impl Io,
        _now: Instant,
        stream: StreamId,
        why: StreamClosed,
    ) {
        self.closed.push((stream, why));
        self.done = true;
    }
    fn handle_timeout(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn handle_wake(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn should_stop(&self) -> bool {
        self.done
    }
}

#[test]
fn tcp_connects_out_exchanges_data_and_closes_from_a_callback() {
    const REPLY: &[u8] = b"pong, and a longer line to cut in two\n";
    for backend in BACKENDS {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let running = Running::spawn(
            config(backend),
            Dialer::new(listener.local_addr().unwrap(), REPLY),
        );
        let (mut peer, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut greeting = [0u8; 12];
        peer.read_exact(&mut greeting).unwrap();
        assert_eq!(
            &greeting, b"hello world\n",
            "{backend:?}: queued bytes lost or reordered"
        );
        let (first, second) = REPLY.split_at(5);
        peer.write_all(first).unwrap();
        peer.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20)); // Two segments, likely two reads.
        peer.write_all(second).unwrap();
        // The driver closes once the reply is whole: we see EOF, and nothing after it.
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{backend:?}: {rest:?} sent after close");
        let (_, driver) = running.join();
        assert_eq!(driver.reply, REPLY, "{backend:?}");
        assert_eq!(
            driver.log.first().map(String::as_str),
            Some("connected"),
            "{backend:?}: {:?}",
            driver.log
        );
        assert!(
            driver.closed.is_empty(),
            "{backend:?}: a local close is not reported: {:?}",
            driver.closed
        );
    }
}

#[test]
fn tcp_connect_to_a_closed_port_reports_connection_refused() {
    for backend in BACKENDS {
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (_, driver) = Running::spawn(config(backend), Dialer::new(dead, b"")).join();
        assert_eq!(
            driver.connect_error, None,
            "{backend:?}: connect should fail later, not at once"
        );
        let stream = driver.stream.expect("connect returned an id");
        assert_eq!(
            driver.closed,
            [(stream, StreamClosed::Error(ErrorKind::ConnectionRefused))],
            "{backend:?}"
        );
        assert!(driver.log.is_empty(), "{backend:?}: {:?}", driver.log);
    }
}

#[test]
fn tcp_connections_beyond_max_streams_are_closed_at_once() {
    for backend in BACKENDS {
        let (driver, events) = TcpEcho::new("127.0.0.1:0", 0);
        // Three, of which one is kept for streams the loop opens: two may be accepted.
        let config = LoopConfig {
            max_streams: 3,
            ..config(backend)
        };
        let running = Running::spawn(config, driver);
        let server = listening(&events);
        let echo = |client: &mut TcpStream, what: &[u8]| {
            client.write_all(what).unwrap();
            let mut got = vec![0u8; what.len()];
            client.read_exact(&mut got).unwrap();
            assert_eq!(got, what, "{backend:?}");
        };
        let mut first = tcp_client(server);
        echo(&mut first, b"one");
        let mut second = tcp_client(server);
        echo(&mut second, b"two");
        // The third is accepted by the kernel, then closed by the loop at once.
        let mut third = tcp_client(server);
        assert!(
            reads_to_the_end(&mut third),
            "{backend:?}: the third stream stayed open"
        );
        echo(&mut first, b"still one");
        echo(&mut second, b"still two");
        // Once one stream is gone, a new one fits.
        drop(first);
        loop {
            match next_event(&events, "the first stream closing") {
                TcpEvent::Closed(_, why) => {
                    assert_eq!(why, StreamClosed::Peer, "{backend:?}");
                    break;
                }
                TcpEvent::Accepted(..) => {}
                other => panic!("{backend:?}: {other:?}"),
            }
        }
        let mut fourth = tcp_client(server);
        echo(&mut fourth, b"four");
        let (_, driver) = running.stop();
        assert_eq!(
            driver.accepted.len(),
            3,
            "{backend:?}: the third never reached the driver"
        );
    }
}

/// On accepting, sends `chunk`-byte pieces to a peer that never reads until the loop
/// refuses one; records what happened.
struct Flood {
    events: mpsc::Sender<TcpEvent>,
    chunk: usize,
    accepted_bytes: usize,
    refused_after: Option<usize>,
    closed: Vec<(StreamId, StreamClosed)>,
}

impl Driver for Flood {
    fn start(&mut self, io: &mut impl Io, _now: Instant) -> std::io::Result<()> {
        let (_, local) = io.listen("127.0.0.1:0".parse().unwrap())?;
        self.events.send(TcpEvent::Listening(local)).unwrap();
        Ok(())
    }
    fn handle_datagram(
        &mut self,
        _: &mut impl Io,
        _: Instant,
        _: SocketId,
        _: SocketAddr,
        _: &[u8],
    ) {
    }
    fn handle_stream_accepted(
        &mut self,
        io: &mut impl Io,
        _now: Instant,
        _listener: ListenerId,
        stream: StreamId,
        _peer: SocketAddr,
    ) {
        let chunk = stream_bytes(1, self.chunk);
        // Bounded: 1 GiB, far beyond what loopback buffers hold.
        for _ in 0..(1usize << 30) / self.chunk {
            if !io.send_stream(stream, &chunk) {
                self.refused_after = Some(self.accepted_bytes);
                // The overflow is reported after this callback, not during it.
                assert!(self.closed.is_empty());
                assert!(!io.send_stream(stream, b"x"));
                return;
            }
            self.accepted_bytes += chunk.len();
        }
    }
    fn handle_stream_closed(
        &mut self,
        _io: &mut impl Io,
        _now: Instant,
        stream: StreamId,
        why: StreamClosed,
    ) {
        self.closed.push((stream, why));
    }
    fn handle_timeout(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn handle_wake(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn should_stop(&self) -> bool {
        !self.closed.is_empty()
    }
}

#[test]
fn tcp_sends_beyond_the_pending_cap_close_the_stream_with_overflow() {
    const CAP: usize = 64 << 10;
    for backend in BACKENDS {
        let (events, events_rx) = mpsc::channel();
        let driver = Flood {
            events,
            chunk: 16 << 10,
            accepted_bytes: 0,
            refused_after: None,
            closed: Vec::new(),
        };
        let config = LoopConfig {
            max_stream_pending_bytes: CAP,
            ..config(backend)
        };
        let running = Running::spawn(config, driver);
        let server = listening(&events_rx);
        let mut client = tcp_client(server); // Reads nothing until the loop gave up.
        let (_, driver) = running.join();
        let refused_after = driver.refused_after.expect("send_stream never refused");
        assert!(
            refused_after >= CAP,
            "{backend:?}: refused after {refused_after} bytes, before even the cap was queued"
        );
        assert_eq!(driver.closed.len(), 1, "{backend:?}: {:?}", driver.closed);
        assert_eq!(driver.closed[0].1, StreamClosed::Overflow, "{backend:?}");
        // The loop closed its end: what the kernel took arrives, then the end.
        assert!(
            reads_to_the_end(&mut client),
            "{backend:?}: the stream stayed open"
        );
    }
}

/// Listens; its first wake-up blocks the loop until `gate` opens, so connections pile up
/// in the backlog meanwhile. Stops once `count` are accepted.
struct GatedAccept {
    gate: Option<mpsc::Receiver<()>>,
    events: mpsc::Sender<TcpEvent>,
    count: usize,
    accepted: usize,
}

impl Driver for GatedAccept {
    fn start(&mut self, io: &mut impl Io, _now: Instant) -> std::io::Result<()> {
        let (_, local) = io.listen("127.0.0.1:0".parse().unwrap())?;
        self.events.send(TcpEvent::Listening(local)).unwrap();
        Ok(())
    }
    fn handle_datagram(
        &mut self,
        _: &mut impl Io,
        _: Instant,
        _: SocketId,
        _: SocketAddr,
        _: &[u8],
    ) {
    }
    fn handle_stream_accepted(
        &mut self,
        _io: &mut impl Io,
        _now: Instant,
        _listener: ListenerId,
        _stream: StreamId,
        _peer: SocketAddr,
    ) {
        self.accepted += 1;
    }
    fn handle_timeout(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn handle_wake(&mut self, _io: &mut impl Io, _now: Instant) {
        if let Some(gate) = self.gate.take() {
            gate.recv_timeout(PATIENCE).unwrap();
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn should_stop(&self) -> bool {
        self.accepted == self.count
    }
}

#[test]
fn tcp_connections_waiting_beyond_one_turns_accept_budget_are_all_accepted() {
    // More than a listener accepts per turn (64), so the rest must be carried over: epoll
    // reports the listener ready once for all of them. Fewer than the backlog (128).
    const CLIENTS: usize = 100;
    for backend in BACKENDS {
        let (events, events_rx) = mpsc::channel();
        let (open_gate, gate) = mpsc::channel();
        let driver = GatedAccept {
            gate: Some(gate),
            events,
            count: CLIENTS,
            accepted: 0,
        };
        let running = Running::spawn(config(backend), driver);
        let server = listening(&events_rx);
        running.wake.notify(); // The loop now waits for the gate.
        let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| tcp_client(server)).collect();
        open_gate.send(()).unwrap();
        let (_, driver) = running.join();
        assert_eq!(driver.accepted, CLIENTS, "{backend:?}");
        drop(clients);
    }
}
