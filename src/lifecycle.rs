//! A process's life, shared by both binaries: the `startup` line, waiting
//! for SIGINT/SIGTERM, a stop token that background loops sleep on (so they
//! wake at once when asked to stop), and the orderly stop that ends with the
//! `shutdown` line and exit code 0.

use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::log::{self, Event, Level};
use crate::server::front::{Access, Front, Limits};
use crate::server::{Handler, Server};

/// How long requests in flight may take to finish once a stop is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The `startup` event, with the fields every service reports; the caller
/// adds its own and emits it. It is written whatever `LOG_LEVEL` says,
/// since a script that asked for port 0 learns the port from `addr`.
pub fn startup_event(service: &str, server: &Server, level: Level) -> Event {
    let event = Event::always(Level::Info, "startup")
        .str("service", service)
        .str("version", crate::VERSION)
        .str("log_level", level.as_str());
    server.describe(event)
}

/// The start both mains share: panics routed to the log, SIGINT/SIGTERM
/// caught before anything else (so none can kill the process mid-start),
/// the configuration read (help, version, usage errors exit here), and
/// the logger started at its level.
pub fn begin<T>(
    spec: &crate::config::Spec<T>,
    level: impl Fn(&T) -> Level,
) -> Result<(Signal, T), ExitCode> {
    install_panic_hook();
    let signal =
        Signal::register().map_err(|e| fatal(spec.bin, &format!("cannot catch signals: {e}")))?;
    let cfg = spec.from_process();
    log::init(level(&cfg));
    Ok((signal, cfg))
}

/// Routes panics to the log (an ERROR `panic` event, besides the usual
/// stderr message). Install first thing in `main`.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Event::new(Level::Error, "panic")
            .str("thread", std::thread::current().name().unwrap_or("unnamed"))
            .str(
                "location",
                &info.location().map(|l| l.to_string()).unwrap_or_default(),
            )
            .str("message", crate::json::clip(&message, 512))
            .emit();
        previous(info);
    }));
}

/// Binds `host:port` and starts the HTTP server with these limits and
/// access rules; on failure, reports it and gives the exit code.
pub fn serve(
    service: &str,
    (host, port): (&str, u16),
    limits: &Limits,
    access: Access,
    handler: Arc<dyn Handler>,
    tls: Option<Arc<crate::server::tls::Certs>>,
) -> Result<Server, ExitCode> {
    let listener = std::net::TcpListener::bind((host, port))
        .map_err(|e| fatal(service, &format!("cannot listen on {host}:{port}: {e}")))?;
    // Best effort: a smaller backlog only slows a burst of new clients.
    let _ = crate::sys::set_listen_backlog(&listener, 4096);
    let front = Front::new(limits.clone(), access);
    if let Some(certs) = &tls {
        certs.warn_if_expiring(crate::clock::epoch_ms() / 1000);
    }
    Server::start(listener, front, handler, tls)
        .map_err(|e| fatal(service, &format!("cannot start the server: {e}")))
}

/// Waits for SIGINT/SIGTERM, then stops the background thread (through
/// `stop`) and the server, logs `shutdown` and returns success. Each
/// SIGHUP meanwhile re-reads the TLS certificate.
pub fn run_until_signal(
    service: &str,
    mut signal: Signal,
    server: Server,
    stop: Stop,
    background: Vec<JoinHandle<()>>,
) -> ExitCode {
    let signal_name = loop {
        match signal.wait() {
            Caught::Stop(name) => break name,
            Caught::Reload => server.reload(),
        }
    };
    stop.stop();
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    let busy = server.stop(SHUTDOWN_GRACE);
    // A poller may be inside a request to a hung upstream: wait for them
    // only as long as the grace allows.
    while !background.iter().all(JoinHandle::is_finished) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for thread in background.into_iter().filter(JoinHandle::is_finished) {
        let _ = thread.join();
    }
    Event::always(Level::Info, "shutdown")
        .str("service", service)
        .str("signal", signal_name)
        .uint("busy_workers_abandoned", busy as u64)
        .emit();
    log::flush();
    ExitCode::SUCCESS
}

/// Reports a runtime failure at start (stderr and the log) and returns
/// exit code 1.
pub fn fatal(service: &str, msg: &str) -> ExitCode {
    Event::new(Level::Error, "fatal").str("error", msg).emit();
    log::flush();
    eprintln!("{service}: {msg}");
    ExitCode::FAILURE
}

/// SIGINT, SIGTERM and SIGHUP, caught from the moment this is created
/// (create it first thing in `main`, before a signal could kill the
/// process).
pub struct Signal(Signals);

/// What a caught signal asks for.
pub enum Caught {
    /// SIGINT or SIGTERM (its name): stop.
    Stop(&'static str),
    /// SIGHUP: re-read the certificate.
    Reload,
}

impl Signal {
    pub fn register() -> std::io::Result<Signal> {
        Signals::new([SIGINT, SIGTERM, SIGHUP]).map(Signal)
    }

    /// Blocks until one of the signals arrives.
    pub fn wait(&mut self) -> Caught {
        loop {
            if let Some(sig) = self.0.wait().next() {
                match sig {
                    SIGINT => return Caught::Stop("SIGINT"),
                    SIGTERM => return Caught::Stop("SIGTERM"),
                    SIGHUP => return Caught::Reload,
                    _ => {}
                }
            }
        }
    }
}

/// A flag that background threads sleep on. Cloning shares it.
#[derive(Clone, Default)]
pub struct Stop(Arc<(Mutex<bool>, Condvar)>);

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Asks every waiter to stop, and wakes them.
    pub fn stop(&self) {
        let (lock, cvar) = &*self.0;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cvar.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        *self.0.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps until `deadline` or until stopped; returns true if stopped.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        let (lock, cvar) = &*self.0;
        let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
        while !*stopped {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            stopped = match cvar.wait_timeout(stopped, deadline - now) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }

    /// Sleeps for `d` or until stopped; returns true if stopped.
    pub fn wait(&self, d: Duration) -> bool {
        self.wait_until(Instant::now() + d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_wakes_a_sleeper_at_once() {
        let stop = Stop::new();
        let sleeper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                (stop.wait(Duration::from_secs(30)), t.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        stop.stop();
        let (stopped, took) = sleeper.join().unwrap();
        assert!(stopped);
        assert!(took < Duration::from_secs(5));
        assert!(stop.is_stopped());
    }

    #[test]
    fn wait_times_out_when_not_stopped() {
        let stop = Stop::new();
        assert!(!stop.wait(Duration::from_millis(5)));
    }
}
