//! A listener that cannot accept for want of file descriptors (`EMFILE`) must neither spin
//! the loop nor lose the waiting connection: the loop rests, then accepts it once
//! descriptors are free, with no new connection arriving to wake it.
//!
//! Its own test binary: it lowers the process's descriptor limit, which would break tests
//! running beside it.
#![allow(unsafe_code)]

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use outdial_dataplane::core::{
    self, Backend, Driver, Io, ListenerId, LoopConfig, SocketId, StreamId, WakeFd,
};

const PATIENCE: Duration = Duration::from_secs(30);

/// What the loop thread tells the test.
#[derive(Debug)]
enum Seen {
    Listening(SocketAddr),
    Accepted(StreamId),
    /// CPU time the loop's thread has used so far.
    Cpu(Duration),
}

/// Listens, reports accepts, and on each wake-up reports its thread's CPU time (or stops).
struct Watch {
    seen: mpsc::Sender<Seen>,
    stop: Arc<AtomicBool>,
    stopped: bool,
}

impl Driver for Watch {
    fn start(&mut self, io: &mut impl Io, _now: Instant) -> std::io::Result<()> {
        let (_, local) = io.listen("127.0.0.1:0".parse().unwrap())?;
        self.seen.send(Seen::Listening(local)).unwrap();
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
        stream: StreamId,
        _peer: SocketAddr,
    ) {
        self.seen.send(Seen::Accepted(stream)).unwrap();
    }
    fn handle_timeout(&mut self, _io: &mut impl Io, _now: Instant) {}
    fn handle_wake(&mut self, _io: &mut impl Io, _now: Instant) {
        self.stopped |= self.stop.load(Ordering::Acquire);
        self.seen.send(Seen::Cpu(thread_cpu_time())).unwrap();
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn should_stop(&self) -> bool {
        self.stopped
    }
}

/// CPU time used by the calling thread (no file descriptor needed).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live local the kernel writes one timespec into.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    assert_eq!(result, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn nofile() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a live local the kernel writes one rlimit into.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) },
        0
    );
    limit
}

fn set_nofile(limit: libc::rlimit) {
    // SAFETY: `limit` is a live local the kernel reads one rlimit from.
    let result = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) };
    assert_eq!(result, 0, "{}", std::io::Error::last_os_error());
}

/// Takes every descriptor left under a limit just above the highest open now (and any
/// gaps below it); returns them and the limit as it was.
fn exhaust_descriptors() -> (Vec<File>, libc::rlimit) {
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let before = nofile();
    set_nofile(libc::rlimit {
        rlim_cur: highest + 8,
        ..before
    });
    let mut held = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(file) => held.push(file),
            Err(error) => {
                assert_eq!(error.raw_os_error(), Some(libc::EMFILE), "{error}");
                break;
            }
        }
        assert!(
            held.len() as u64 <= highest + 8,
            "the descriptor limit did not hold"
        );
    }
    (held, before)
}

fn cpu_now(wake: &WakeFd, seen: &mpsc::Receiver<Seen>) -> Duration {
    wake.notify();
    loop {
        match seen.recv_timeout(PATIENCE).expect("the loop did not wake") {
            Seen::Cpu(cpu) => return cpu,
            Seen::Accepted(stream) => panic!("accepted {stream:?} without descriptors"),
            Seen::Listening(_) => {}
        }
    }
}

#[test]
fn accept_without_descriptors_rests_then_takes_the_waiting_connection() {
    for backend in [Backend::IoUring, Backend::Epoll] {
        let wake = Arc::new(WakeFd::new().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, seen) = mpsc::channel();
        let driver = Watch {
            seen: tx,
            stop: Arc::clone(&stop),
            stopped: false,
        };
        let loop_wake = Arc::clone(&wake);
        let thread = std::thread::spawn(move || {
            let mut driver = driver;
            let config = LoopConfig {
                backend,
                ..LoopConfig::default()
            };
            core::run(&config, &loop_wake, &mut driver).map(drop)
        });
        let Seen::Listening(server) = seen.recv_timeout(PATIENCE).unwrap() else {
            panic!("no listener");
        };

        let (mut held, limit) = exhaust_descriptors();
        held.pop(); // One for the client; none left for the loop's accept.
        let client = TcpStream::connect(server).unwrap();
        let before = cpu_now(&wake, &seen);
        std::thread::sleep(Duration::from_millis(300));
        let after = cpu_now(&wake, &seen);
        let spent = after.saturating_sub(before);
        // Spinning would burn most of the 300 ms; resting costs a few retries.
        assert!(
            spent < Duration::from_millis(50),
            "{backend:?}: the loop used {spent:?} of CPU while accept failed"
        );

        drop(held);
        set_nofile(limit);
        let accepted = loop {
            match seen.recv_timeout(PATIENCE) {
                Ok(Seen::Accepted(stream)) => break Some(stream),
                Ok(_) => {}
                Err(_) => break None,
            }
        };
        assert!(
            accepted.is_some(),
            "{backend:?}: the waiting connection was never accepted"
        );
        stop.store(true, Ordering::Release);
        wake.notify();
        thread.join().unwrap().unwrap();
        drop(client);
    }
}
