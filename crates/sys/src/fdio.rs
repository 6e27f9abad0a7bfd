//! Small file-descriptor primitives for event loops outside this crate
//! (the tunnel's): waiting for several descriptors at once, and reading a
//! stream socket without blocking while its writes block.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Wait until one of `fds` is readable (or has an error or hangup), at
/// most `timeout`. Afterwards `ready[i]` says whether `fds[i]` is.
/// Returns the number ready; an interrupted wait returns 0.
///
/// `ppoll`, not `poll`: its timeout is a timespec, so a wait for an
/// impairment's next release ends on time (as the switch's `epoll_pwait2`
/// does), not rounded to a millisecond; a timeout is never cut short.
pub fn poll_readable(fds: &[RawFd], timeout: Duration, ready: &mut Vec<bool>) -> io::Result<usize> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: ppoll on a live array of pollfds of the given length, with a
    // valid timespec and no signal mask.
    let r = unsafe {
        libc::ppoll(
            p.as_mut_ptr(),
            p.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    ready.clear();
    if r < 0 {
        let e = io::Error::last_os_error();
        ready.resize(fds.len(), false);
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    ready.extend(p.iter().map(|p| p.revents != 0));
    Ok(r as usize)
}

/// `recv(fd, buf, MSG_DONTWAIT)`: what is there now, `Ok(0)` at the end
/// of the stream, `WouldBlock` when nothing is.
pub fn recv_nowait(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: recv into a live buffer of the given length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    /// The tunnel's impairment waits on this for its next release: a wait
    /// below a millisecond is neither cut to nothing (a spin) nor rounded
    /// up to a whole one (a late release).
    #[test]
    fn sub_millisecond_timeouts_are_kept_to_the_nanosecond() {
        let (_a, b) = UnixStream::pair().unwrap();
        let mut ready = vec![];
        let t = Duration::from_micros(300);
        let mut fastest = Duration::MAX;
        for _ in 0..50 {
            let t0 = std::time::Instant::now();
            assert_eq!(poll_readable(&[b.as_raw_fd()], t, &mut ready).unwrap(), 0);
            let took = t0.elapsed();
            assert!(took >= t, "woke after {took:?} of {t:?}");
            fastest = fastest.min(took);
        }
        // The fastest of 50, so a loaded machine does not matter: one wait
        // on time is enough, and whole milliseconds never are.
        assert!(
            fastest < Duration::from_millis(1),
            "every wait of {t:?} took a millisecond or more (fastest {fastest:?})"
        );
    }

    #[test]
    fn readable_is_reported_and_recv_does_not_wait() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut ready = vec![];
        let fds = [b.as_raw_fd()];
        assert_eq!(
            poll_readable(&fds, Duration::from_millis(10), &mut ready).unwrap(),
            0
        );
        assert_eq!(ready, [false]);
        let mut buf = [0u8; 8];
        let e = recv_nowait(b.as_raw_fd(), &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        a.write_all(b"hi").unwrap();
        assert_eq!(
            poll_readable(&fds, Duration::from_secs(5), &mut ready).unwrap(),
            1
        );
        assert_eq!(ready, [true]);
        assert_eq!(recv_nowait(b.as_raw_fd(), &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"hi");
        // shutdown, not drop: a child another test forks may hold a copy
        // of the descriptor until it execs.
        a.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(
            recv_nowait(b.as_raw_fd(), &mut buf).unwrap(),
            0,
            "end of stream"
        );
    }
}
