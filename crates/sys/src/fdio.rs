//! Small file-descriptor primitives for event loops outside this crate
//! (the tunnel's): waiting for several descriptors at once, a one-shot
//! epoll set several threads share, and reading a stream socket without
//! blocking while its writes block.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// An epoll set whose descriptors report once (`EPOLLONESHOT`) and stay
/// silent until re-armed, for threads that share the work of several
/// descriptors: each thread waits on the same set, the kernel wakes one
/// waiter per event (`epoll_wait` waits exclusively), and a descriptor
/// being handled by one thread wakes no other until that thread re-arms
/// it. Disarming one that has not fired lets a thread keep it for itself
/// (no other thread is woken when it turns readable).
#[derive(Debug)]
pub struct OneShot {
    fd: OwnedFd,
}

impl OneShot {
    pub fn new() -> io::Result<OneShot> {
        // SAFETY: plain epoll_create1 call.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OneShot {
            // SAFETY: raw is a fresh descriptor nobody else owns.
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: ev is a valid epoll_event for the call; fd is the
        // caller's open descriptor.
        let r = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Watch `fd` for input under `token`, armed.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let ev = (libc::EPOLLIN | libc::EPOLLONESHOT) as u32;
        self.ctl(libc::EPOLL_CTL_ADD, fd, ev, token)
    }

    /// Report `fd` once more when it is (or becomes) readable.
    pub fn arm(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let ev = (libc::EPOLLIN | libc::EPOLLONESHOT) as u32;
        self.ctl(libc::EPOLL_CTL_MOD, fd, ev, token)
    }

    /// Report nothing of `fd` until it is armed again.
    pub fn disarm(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, libc::EPOLLONESHOT as u32, token)
    }

    /// Wait at most `timeout` for one armed descriptor to be readable (or
    /// fail); its token, or `None` on timeout or interruption. The
    /// descriptor is disarmed by the report.
    pub fn wait(&self, timeout: Duration) -> io::Result<Option<u64>> {
        let mut ev = [libc::epoll_event { events: 0, u64: 0 }];
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: ev is a live array of one epoll_event.
        let r = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), ev.as_mut_ptr(), 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(None);
            }
            return Err(e);
        }
        Ok((r == 1).then(|| ev[0].u64))
    }
}

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
    fn one_shot_reports_once_until_armed_and_not_when_disarmed() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let (mut c, d) = UnixStream::pair().unwrap();
        let ep = OneShot::new().unwrap();
        ep.add(b.as_raw_fd(), 7).unwrap();
        ep.add(d.as_raw_fd(), 9).unwrap();
        assert_eq!(ep.wait(Duration::from_millis(10)).unwrap(), None);
        a.write_all(b"x").unwrap();
        assert_eq!(ep.wait(Duration::from_secs(5)).unwrap(), Some(7));
        // Still readable, but reported once until re-armed.
        assert_eq!(ep.wait(Duration::from_millis(10)).unwrap(), None);
        ep.arm(b.as_raw_fd(), 7).unwrap();
        assert_eq!(ep.wait(Duration::from_secs(5)).unwrap(), Some(7));
        // Disarmed before it turns readable: silent; armed: reported.
        ep.disarm(d.as_raw_fd(), 9).unwrap();
        c.write_all(b"y").unwrap();
        assert_eq!(ep.wait(Duration::from_millis(10)).unwrap(), None);
        ep.arm(d.as_raw_fd(), 9).unwrap();
        assert_eq!(ep.wait(Duration::from_secs(5)).unwrap(), Some(9));
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
