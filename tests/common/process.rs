//! The real binary as a child process: started on port 0, its log read line by line.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_bon-proxy");

/// Starts the binary and returns it with the address from its "listening on" log line and the log so far.
pub fn start(cmd: &mut Command) -> (Child, String, Vec<String>) {
    let (child, addr, seen, _) = start_logged(cmd);
    (child, addr, seen)
}

/// `start`, also returning every later log line as it arrives.
pub fn start_logged(cmd: &mut Command) -> (Child, String, Vec<String>, std::sync::mpsc::Receiver<String>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().to_owned();
            seen.push(line);
            // Keep draining stderr so the child never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            return (child, addr, seen, rx);
        }
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("no 'listening on' line; the binary said:\n{}", seen.join("\n"));
}

/// Waits for the child to exit with status 0 within `limit`.
pub fn exits_cleanly(child: &mut Child, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(code) = child.try_wait().unwrap() {
            assert!(code.success(), "exit status {code:?}");
            return;
        }
        assert!(std::time::Instant::now() < deadline, "did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
