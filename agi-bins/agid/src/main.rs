//! featpkg-agid: the FastAGI server (see the library's documentation).
//!
//!     featpkg-agid [--port 4573] [--lock FILE] [--log FILE]
//!                  [--spool DIR] [--max-calls 1024]
//!
//! It listens on 127.0.0.1 only. Kept alive like the watchers: cron starts it
//! every minute (or systemd, `featpkg-agid@.service`); a second copy finds the
//! lock taken and exits 0 at once. It stops on SIGTERM/SIGINT, and by itself
//! once its own file was removed or replaced (the feature uninstalled or
//! upgraded: cron then starts the new one), letting calls under way finish.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use featpkg_agid::server::{Config, Server, Stopper};
use featpkg_agid::{DEFAULT_PORT, listen, routes};
use featpkg_ami::daemon::{Log, open_lock};

/// How often it checks whether its own file is still the one it runs.
const SELF_CHECK: Duration = Duration::from_secs(5);

/// How long calls under way may take to finish once it stops.
const DRAIN: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Options {
    port: u16,
    lock: PathBuf,
    log: Option<PathBuf>,
    config: Config,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        port: DEFAULT_PORT,
        lock: "/var/spool/asterisk/featpkg/agid.lock".into(),
        log: None,
        config: Config::default(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{flag} {value:?}: not a positive number"))
        };
        match flag.as_str() {
            "--port" => {
                o.port = u16::try_from(number()?).map_err(|_| format!("--port {value}: too big"))?
            }
            "--lock" => o.lock = value.into(),
            "--log" => o.log = Some(value.into()),
            "--spool" if value.starts_with('/') => o.config.limits.spool = value.into(),
            "--max-calls" => o.config.max_calls = number()? as usize,
            _ => return Err(format!("unknown or bad option {flag} {value:?}")),
        }
    }
    Ok(o)
}

/// Stops the server on SIGTERM/SIGINT, and once its own file is gone or
/// replaced.
fn watch_for_stop(stopper: Stopper) {
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]) {
        let on_signal = stopper.clone();
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                tracing::info!("stopping: signal");
                on_signal.stop();
            }
        });
    }
    let Some((exe, inode)) = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::metadata(&p).ok().map(|m| (p, (m.dev(), m.ino()))))
    else {
        return;
    };
    std::thread::spawn(move || {
        while !stopper.stopping() {
            std::thread::sleep(SELF_CHECK);
            let now = std::fs::metadata(&exe).ok().map(|m| (m.dev(), m.ino()));
            if now != Some(inode) {
                tracing::info!("stopping: {} was removed or replaced", exe.display());
                stopper.stop();
            }
        }
    });
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("featpkg-agid: {e}");
            return ExitCode::from(2);
        }
    };
    let lock = match open_lock(&options.lock) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("featpkg-agid: {}: {e}", options.lock.display());
            return ExitCode::from(2);
        }
    };
    if lock.try_lock().is_err() {
        return ExitCode::SUCCESS; // another instance is running
    }
    let _log = Log::open("featpkg-agid", options.log.as_deref());
    let listener = match listen::bind_loopback(options.port) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen on 127.0.0.1:{}: {e}", options.port);
            return ExitCode::from(1);
        }
    };
    let Ok(server) = Server::new(listener, routes(), options.config) else {
        return ExitCode::from(1);
    };
    watch_for_stop(server.stopper());
    tracing::info!("serving FastAGI on 127.0.0.1:{}", options.port);
    server.run(DRAIN);
    tracing::info!("stopped");
    drop(lock);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let args: Vec<String> = ["--port", "4600", "--max-calls", "8", "--spool", "/s"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = parse(&args).unwrap();
        assert_eq!((o.port, o.config.max_calls), (4600, 8));
        assert_eq!(o.config.limits.spool, PathBuf::from("/s"));
        for bad in [
            &["--port", "70000"][..],
            &["--port"],
            &["--spool", "rel"],
            &["--x", "1"],
        ] {
            let args: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(parse(&args).is_err(), "{bad:?}");
        }
    }
}
