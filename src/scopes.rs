//! Permissions: the scopes an API key holds (§4 of the contract). Plain data, so that the store
//! can keep them and `auth` can check them without either importing the other.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// One permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Create connect sessions and connections.
    Connect,
    /// Read connections.
    ConnectionsRead,
    /// Change, verify, delete connections; mint connection keys.
    ConnectionsWrite,
    /// Proxy any method.
    Proxy,
    /// Proxy GET and HEAD only.
    ProxyRead,
    /// Everything in its tenant.
    Admin,
}

impl Scope {
    const ALL: [Scope; 6] = [
        Scope::Connect,
        Scope::ConnectionsRead,
        Scope::ConnectionsWrite,
        Scope::Proxy,
        Scope::ProxyRead,
        Scope::Admin,
    ];

    /// The scope's name in keys, the CLI and errors.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Connect => "connect",
            Scope::ConnectionsRead => "connections:read",
            Scope::ConnectionsWrite => "connections:write",
            Scope::Proxy => "proxy",
            Scope::ProxyRead => "proxy:read",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of scopes.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    /// The set holding exactly `scopes`.
    pub fn of(scopes: &[Scope]) -> Self {
        Self(scopes.iter().fold(0, |bits, s| bits | s.bit()))
    }

    /// Whether the set grants `scope`: `admin` grants all, `proxy` grants `proxy:read`.
    pub fn grants(self, scope: Scope) -> bool {
        let has = |s: Scope| self.0 & s.bit() != 0;
        has(scope) || has(Scope::Admin) || (scope == Scope::ProxyRead && has(Scope::Proxy))
    }

    /// The scopes in the set.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.0 & s.bit() != 0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromStr for Scopes {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut scopes = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let scope = Scope::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .ok_or_else(|| format!("unknown scope `{name}` (known: {})", Scopes::of(&Scope::ALL)))?;
            scopes.push(scope);
        }
        Ok(Scopes::of(&scopes))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.iter().map(Scope::name).collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

impl Serialize for Scopes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter().map(Scope::name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print_by_name() {
        let scopes: Scopes = "proxy, connections:read".parse().unwrap();
        assert_eq!(scopes.to_string(), "connections:read,proxy");
        assert!("proxy,root".parse::<Scopes>().unwrap_err().contains("`root`"));
        assert!("".parse::<Scopes>().unwrap().is_empty());
    }

    #[test]
    fn admin_grants_everything_and_proxy_grants_proxy_read() {
        let admin = Scopes::of(&[Scope::Admin]);
        assert!(Scope::ALL.iter().all(|s| admin.grants(*s)));
        let proxy = Scopes::of(&[Scope::Proxy]);
        assert!(proxy.grants(Scope::ProxyRead));
        assert!(!proxy.grants(Scope::Connect));
        let read = Scopes::of(&[Scope::ProxyRead]);
        assert!(!read.grants(Scope::Proxy));
    }
}
