//! Address ranges of the allowlist (`192.0.2.0/24`, `2001:db8::/32`, or a
//! single address). Small enough that a dependency would not pay for itself.

use std::fmt;
use std::net::IpAddr;

/// Why an allowlist entry is refused; each text says what to enter instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not an IP address or range (e.g. 192.0.2.10 or 192.0.2.0/24)")]
    NotAddress(String),
    #[error("the prefix of {0:?} must be 0 to {1}")]
    Prefix(String, u8),
    #[error(
        "a range of every address would make hikyaku an open relay; name the devices' addresses"
    )]
    Everything,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr` or `addr/prefix`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::NotAddress(text.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| CidrError::Prefix(text.to_owned(), max))?,
        };
        if prefix == 0 {
            return Err(CidrError::Everything);
        }
        Ok(Cidr {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether `ip` is inside the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let c = Cidr::parse("192.0.2.77/24").unwrap();
        assert_eq!(c.to_string(), "192.0.2.0/24");
        assert!(c.contains("192.0.2.1".parse().unwrap()));
        assert!(c.contains("::ffff:192.0.2.9".parse().unwrap()));
        assert!(!c.contains("192.0.3.1".parse().unwrap()));
        assert_eq!(Cidr::parse("10.0.0.5").unwrap().to_string(), "10.0.0.5/32");
        assert!(
            Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        assert!(Cidr::parse("0.0.0.0/0").is_err());
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("printer").is_err());
    }
}
