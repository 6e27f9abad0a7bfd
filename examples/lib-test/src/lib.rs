//! The code under test: a tiny line-echo protocol over TCP. The tests in
//! `tests/` run it between network namespaces that weft builds.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Answer each line a client sends with `PEER-ADDRESS LINE` (so the test
/// sees what address the server saw: behind a NAT, the NAT's).
pub fn serve_one(listener: &TcpListener) -> std::io::Result<()> {
    let (c, peer) = listener.accept()?;
    let mut w = c.try_clone()?;
    for line in BufReader::new(c).lines() {
        writeln!(w, "{} {}", peer.ip(), line?)?;
    }
    Ok(())
}

/// Send one line, read the answer.
pub fn ask(server: SocketAddr, line: &str) -> std::io::Result<String> {
    let mut c = TcpStream::connect(server)?;
    writeln!(c, "{line}")?;
    let mut r = BufReader::new(c);
    let mut answer = String::new();
    r.read_line(&mut answer)?;
    Ok(answer.trim_end().to_string())
}
