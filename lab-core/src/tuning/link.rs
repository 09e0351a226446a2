//! Interface MTUs: read and set with `SIOCGIFMTU` / `SIOCSIFMTU` ioctls, and
//! the interface's allowed range from rtnetlink (`IFLA_MIN_MTU` /
//! `IFLA_MAX_MTU`). Sockets are made by the calling thread, so these act in
//! that thread's network namespace.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};

nix::ioctl_read_bad!(siocgifmtu, libc::SIOCGIFMTU, libc::ifreq);
nix::ioctl_write_ptr_bad!(siocsifmtu, libc::SIOCSIFMTU, libc::ifreq);

/// rtnetlink attribute types (linux/if_link.h).
#[repr(u16)]
#[derive(Clone, Copy, PartialEq, Eq)]
enum IflaAttr {
    MinMtu = 50,
    MaxMtu = 51,
}

fn ifreq(iface: &str) -> io::Result<libc::ifreq> {
    let bytes = iface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{iface}' is not an interface name"),
        ));
    }
    // SAFETY: ifreq is a plain C struct (name array and a union of integers
    // and addresses) for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

fn inet_socket() -> io::Result<OwnedFd> {
    socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)
}

fn no_such(iface: &str, e: nix::Error) -> io::Error {
    if e == nix::Error::ENODEV {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("there is no interface '{iface}' in this network namespace"),
        )
    } else {
        io::Error::from(e)
    }
}

pub fn mtu(iface: &str) -> io::Result<u32> {
    let mut req = ifreq(iface)?;
    let sock = inet_socket()?;
    // SAFETY: the socket is open for the duration of the call, `req` is a
    // valid ifreq with a NUL-terminated name, and SIOCGIFMTU writes only
    // the `ifru_mtu` member of it.
    unsafe { siocgifmtu(sock.as_raw_fd(), &mut req) }.map_err(|e| no_such(iface, e))?;
    // SAFETY: SIOCGIFMTU succeeded, so the union holds the MTU.
    Ok(unsafe { req.ifr_ifru.ifru_mtu } as u32)
}

pub fn set_mtu(iface: &str, mtu: u32) -> io::Result<()> {
    let mut req = ifreq(iface)?;
    req.ifr_ifru.ifru_mtu = i32::try_from(mtu)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "MTU out of range"))?;
    let sock = inet_socket()?;
    // SAFETY: the socket is open, `req` is a valid ifreq with the name and
    // the MTU set; SIOCSIFMTU only reads it.
    unsafe { siocsifmtu(sock.as_raw_fd(), &req) }.map_err(|e| no_such(iface, e))?;
    Ok(())
}

/// The interface's (min, max) MTU from an RTM_GETLINK answer; none when the
/// kernel does not report them.
pub fn mtu_range(iface: &str) -> io::Result<Option<(u32, u32)>> {
    let index = nix::net::if_::if_nametoindex(iface).map_err(|e| no_such(iface, e))?;
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    // nlmsghdr (16 bytes) + ifinfomsg (16 bytes).
    let mut req = [0u8; 32];
    req[0..4].copy_from_slice(&32u32.to_ne_bytes());
    req[4..6].copy_from_slice(&libc::RTM_GETLINK.to_ne_bytes());
    req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[16] = libc::AF_UNSPEC as u8;
    req[20..24].copy_from_slice(&(index as i32).to_ne_bytes());
    nix::sys::socket::send(sock.as_raw_fd(), &req, nix::sys::socket::MsgFlags::empty())?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = nix::sys::socket::recv(
        sock.as_raw_fd(),
        &mut buf,
        nix::sys::socket::MsgFlags::empty(),
    )?;
    parse_link_reply(&buf[..n])
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Finds IFLA_MIN_MTU and IFLA_MAX_MTU in one netlink reply.
fn parse_link_reply(b: &[u8]) -> io::Result<Option<(u32, u32)>> {
    let short = || io::Error::new(io::ErrorKind::InvalidData, "short rtnetlink reply");
    let len = u32_at(b, 0).ok_or_else(short)? as usize;
    let kind = u16_at(b, 4).ok_or_else(short)?;
    if kind == libc::NLMSG_ERROR as u16 {
        let code = u32_at(b, 16).ok_or_else(short)? as i32;
        return Err(io::Error::from_raw_os_error(-code));
    }
    if kind != libc::RTM_NEWLINK {
        return Ok(None);
    }
    let end = len.min(b.len());
    let (mut min, mut max) = (None, None);
    let mut at = 32;
    while at + 4 <= end {
        let alen = u16_at(b, at).ok_or_else(short)? as usize;
        let atype = u16_at(b, at + 2).ok_or_else(short)? & 0x3fff;
        if alen < 4 {
            break;
        }
        if atype == IflaAttr::MinMtu as u16 {
            min = u32_at(b, at + 4);
        } else if atype == IflaAttr::MaxMtu as u16 {
            max = u32_at(b, at + 4);
        }
        at += (alen + 3) & !3;
    }
    // A max of 0 means the driver sets no limit (the loopback does that).
    Ok(min.zip(max).filter(|&(_, hi)| hi > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_mtu_and_range_are_read() {
        let m = mtu("lo").unwrap();
        assert!(m >= 1500, "{m}");
        if let Some((lo, hi)) = mtu_range("lo").unwrap() {
            assert!(lo <= m && m <= hi, "{lo} {m} {hi}");
        }
    }

    #[test]
    fn missing_interfaces_and_bad_names_are_clear() {
        let e = mtu("nosuchif0").unwrap_err();
        assert!(e.to_string().contains("no interface 'nosuchif0'"), "{e}");
        assert!(mtu("a-name-that-is-far-too-long").is_err());
        assert!(mtu_range("nosuchif0").is_err());
    }

    #[test]
    fn netlink_attributes_are_found_and_truncation_is_safe() {
        let mut b = vec![0u8; 32];
        b[4..6].copy_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
        for (t, v) in [(3u16, 0u32), (50, 68), (51, 65535)] {
            b.extend_from_slice(&8u16.to_ne_bytes());
            b.extend_from_slice(&t.to_ne_bytes());
            b.extend_from_slice(&v.to_ne_bytes());
        }
        let n = b.len() as u32;
        b[0..4].copy_from_slice(&n.to_ne_bytes());
        assert_eq!(parse_link_reply(&b).unwrap(), Some((68, 65535)));
        assert_eq!(parse_link_reply(&b[..40]).unwrap(), None);
        assert!(parse_link_reply(&b[..3]).is_err());
    }
}
