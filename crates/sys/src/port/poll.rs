//! The epoll set the switch's threads wait on.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::cvt;

#[derive(Debug)]
pub struct Poller {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
    /// epoll_pwait2 (Linux 5.11) takes its timeout in nanoseconds, so a
    /// delayed frame leaves on time rather than on the next millisecond;
    /// cleared when the kernel does not have it.
    pub(super) pwait2: bool,
}

/// A ready file descriptor: its token, and whether it reported an error
/// or hang-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub token: u64,
    pub error: bool,
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        // SAFETY: plain epoll_create1 call.
        let raw = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Poller {
            // SAFETY: raw is a fresh fd we own.
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
            events: Vec::with_capacity(64),
            pwait2: true,
        })
    }

    /// Watch `fd` for input under `token`.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: ev is a valid epoll_event for the call.
        cvt(unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut ev,
            )
        })
        .map(drop)
    }

    pub fn remove(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: EPOLL_CTL_DEL ignores the event pointer.
        cvt(unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                std::ptr::null_mut(),
            )
        })
        .map(drop)
    }

    /// Waits up to `timeout` (forever if `None`) and fills `out` with what
    /// is ready.
    pub fn wait(&mut self, out: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()> {
        out.clear();
        self.events.clear();
        let cap = self.events.capacity() as libc::c_int;
        let n = loop {
            let n = match timeout {
                Some(t) if self.pwait2 => {
                    let ts = libc::timespec {
                        tv_sec: t.as_secs().min(i32::MAX as u64) as libc::time_t,
                        tv_nsec: t.subsec_nanos() as libc::c_long,
                    };
                    // SAFETY: the kernel writes at most `cap` events into
                    // the spare capacity; ts is valid; no signal mask.
                    unsafe {
                        libc::epoll_pwait2(
                            self.fd.as_raw_fd(),
                            self.events.as_mut_ptr(),
                            cap,
                            &ts,
                            std::ptr::null(),
                        )
                    }
                }
                _ => {
                    let ms = match timeout {
                        None => -1,
                        // Round up, so a deadline 0.3 ms away does not spin.
                        Some(t) => {
                            t.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
                        }
                    };
                    // SAFETY: as above.
                    unsafe {
                        libc::epoll_wait(self.fd.as_raw_fd(), self.events.as_mut_ptr(), cap, ms)
                    }
                }
            };
            if n < 0
                && self.pwait2
                && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS)
            {
                self.pwait2 = false;
                continue;
            }
            break n;
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        // SAFETY: the kernel initialised n events.
        unsafe { self.events.set_len(n as usize) };
        out.extend(self.events.iter().map(|e| Ready {
            token: e.u64,
            error: e.events & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0,
        }));
        Ok(())
    }
}
