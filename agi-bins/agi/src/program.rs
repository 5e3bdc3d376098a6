//! One trait for a feature's AGI commands, served two ways with the same code:
//! by the feature's per-call program, which Asterisk starts for every call
//! (stdin/stdout, [`run_stdio`]), and by featpkg-agid, the FastAGI server that
//! takes one loopback connection per call ([`Route`]).
//!
//! Either way the program sees the same [`Session`]: the environment block,
//! its dialplan arguments (`agi_arg_N` over FastAGI, argv for a local AGI:
//! Asterisk sends both), and replies it waits for with its `deadline`. How the
//! session ends ([`Ending`]) is the per-call program's exit status; the server
//! reports it to Asterisk the way AGISTATUS would come out of that status.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use crate::{Agi, AgiError, stdio_session};

/// An AGI session as a feature's code sees it, over stdin/stdout or a socket.
pub type Session = Agi<Box<dyn BufRead>, Box<dyn Write>>;

/// The deadline before a program's arguments are read (or when they are bad).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);

/// A feature's AGI commands, implemented once and served by its per-call
/// program and by featpkg-agid.
pub trait AgiProgram {
    /// The program's file name, which is also its FastAGI route
    /// (`agi://127.0.0.1:4573/featpkg-operator-alert`).
    const NAME: &'static str;
    /// How its VERBOSE lines name it: `featpkg operator-alert`.
    const LOG_NAME: &'static str;
    /// The dialplan arguments once checked.
    type Config;
    /// Checks the dialplan arguments (`menu`, `family=op_alert`, …); the error
    /// says what is wrong in words for the Asterisk console.
    fn parse_args(args: &[String]) -> Result<Self::Config, String>;
    /// How long to wait for any reply from Asterisk.
    fn deadline(config: &Self::Config) -> Duration;
    /// The conversation with Asterisk for one call.
    fn run(agi: &mut Session, config: Self::Config) -> Result<(), AgiError>;
}

/// How a session ended, as the per-call program's exit status says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The conversation ran to its end, or the channel hung up or closed it (0).
    Done,
    /// An error Asterisk was told about with VERBOSE (1).
    Failed,
    /// The dialplan arguments were refused (2).
    BadArguments,
}

impl Ending {
    /// The per-call program's exit status (non-zero: AGISTATUS=FAILURE).
    pub fn exit_code(self) -> u8 {
        match self {
            Ending::Done => 0,
            Ending::Failed => 1,
            Ending::BadArguments => 2,
        }
    }
}

/// Runs `P` on a session whose environment block is read: bad arguments are
/// logged with VERBOSE, a hangup or EOF is a normal end, any other error is
/// logged with VERBOSE.
pub fn conclude<P: AgiProgram>(agi: &mut Session, parsed: Result<P::Config, String>) -> Ending {
    let config = match parsed {
        Ok(c) => c,
        Err(message) => {
            let _ = agi.verbose(&format!("{}: bad arguments: {message}", P::LOG_NAME), 1);
            return Ending::BadArguments;
        }
    };
    agi.set_reply_timeout(P::deadline(&config));
    match P::run(agi, config) {
        Ok(()) | Err(AgiError::Hangup) | Err(AgiError::Eof) => Ending::Done,
        // A session with its own deadlines (featpkg-agid's) ran out of time:
        // ended as the per-call program's watchdog ends it, without a word.
        Err(AgiError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => Ending::Failed,
        Err(e) => {
            let _ = agi.verbose(&format!("{}: {e}", P::LOG_NAME), 1);
            Ending::Failed
        }
    }
}

/// The `main` of a feature's per-call program: its arguments from argv, the
/// session on stdin/stdout ([`stdio_session`], with the deadline of the
/// parsed arguments, or 5 s), [`Ending`] as the exit status.
pub fn run_stdio<P: AgiProgram>() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = P::parse_args(&args);
    let wait = parsed.as_ref().map_or(DEFAULT_DEADLINE, P::deadline);
    let Ok(mut agi) = stdio_session(wait) else {
        return ExitCode::from(Ending::BadArguments.exit_code());
    };
    ExitCode::from(conclude::<P>(&mut agi, parsed).exit_code())
}

/// One program a FastAGI server serves: its name (the request path,
/// `agi_network_script`) and how to run it on a session.
#[derive(Clone, Copy)]
pub struct Route {
    /// The program's name: [`AgiProgram::NAME`].
    pub name: &'static str,
    serve: fn(&mut Session) -> Ending,
}

impl Route {
    /// The route to `P`.
    pub fn to<P: AgiProgram>() -> Route {
        Route {
            name: P::NAME,
            serve: serve_env_args::<P>,
        }
    }

    /// Runs the program on `agi`, with the arguments of its environment block.
    pub fn serve(&self, agi: &mut Session) -> Ending {
        (self.serve)(agi)
    }
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Route({})", self.name)
    }
}

/// [`conclude`] with the arguments FastAGI sends: `agi_arg_1..N`.
fn serve_env_args<P: AgiProgram>(agi: &mut Session) -> Ending {
    let args: Vec<String> = agi.env().args().iter().map(|a| a.to_string()).collect();
    conclude::<P>(agi, P::parse_args(&args))
}
