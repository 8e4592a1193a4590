//! Running a command with its stderr on a real pseudo-terminal, to see what a person at a
//! terminal sees (the operational subcommands draw indicatif spinners there, and print plain
//! log lines everywhere else).

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::Duration;

/// What a command printed with its stderr on a terminal.
pub struct TtyOutput {
    pub code: Option<i32>,
    /// stdout (a pipe).
    pub stdout: String,
    /// Everything written to the terminal, `\r\n` turned back into `\n`, escapes kept.
    pub terminal: String,
    raw: Vec<u8>,
}

impl TtyOutput {
    /// The terminal's rows as a person reads them once the command ended (a vt100 screen of
    /// the pty's size fed everything written: redraws, clears and line wraps applied).
    pub fn screen_lines(&self) -> Vec<String> {
        let mut screen = vt100::Parser::new(ROWS, COLS, 0);
        screen.process(&self.raw);
        screen
            .screen()
            .rows(0, COLS)
            .map(|l| l.trim_end().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Whether the terminal got cursor or line-clearing escapes (a redrawn spinner line).
    pub fn redrew(&self) -> bool {
        self.terminal.contains("\x1b[")
    }
}

const ROWS: u16 = 200;
const COLS: u16 = 120;

/// Runs `cmd` with stdin from /dev/null, stdout piped and stderr on a fresh 120×200
/// pseudo-terminal (`TERM=xterm`), and returns once it exited and the terminal is drained.
pub async fn run_on_tty(cmd: tokio::process::Command, within: Duration) -> TtyOutput {
    run_on_tty_typing(cmd, None, within).await
}

/// [`run_on_tty`], and with `typed = Some((prompt, answer))` stdin is the terminal too, and
/// `answer` is typed once `prompt` has appeared on it.
pub async fn run_on_tty_typing(
    mut cmd: tokio::process::Command,
    typed: Option<(&str, &str)>,
    within: Duration,
) -> TtyOutput {
    let size = nix::pty::Winsize {
        ws_row: ROWS,
        ws_col: COLS,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
    let master: OwnedFd = pty.master;
    if typed.is_some() {
        cmd.stdin(Stdio::from(pty.slave.try_clone().expect("dup the pty")));
    } else {
        cmd.stdin(Stdio::null());
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::from(pty.slave))
        .env("TERM", "xterm")
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn on a pty");
    // The command keeps its copy of the slave until dropped: without this the master never
    // sees the end of the terminal's output.
    drop(cmd);

    let mut f = std::fs::File::from(master);
    let mut typed = typed.map(|(p, a)| (p.as_bytes().to_vec(), a.as_bytes().to_vec()));
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            // Linux answers EIO once every slave descriptor is closed.
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    bytes.extend_from_slice(&buf[..n]);
                    let prompted = typed
                        .as_ref()
                        .is_some_and(|(p, _)| bytes.windows(p.len()).any(|w| w == &p[..]));
                    if prompted && let Some((_, answer)) = typed.take() {
                        std::io::Write::write_all(&mut f, &answer).expect("type on the terminal");
                    }
                }
            }
        }
        bytes
    });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let out = tokio::spawn(async move {
        let mut s = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut s)
            .await
            .expect("read stdout");
        s
    });
    let status = tokio::time::timeout(within, child.wait())
        .await
        .expect("the command finishes in time")
        .expect("wait");
    let stdout = out.await.expect("stdout task");
    let terminal = tokio::task::spawn_blocking(move || reader.join().expect("pty reader"))
        .await
        .expect("join");
    TtyOutput {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        terminal: String::from_utf8_lossy(&terminal).replace("\r\n", "\n"),
        raw: terminal,
    }
}
