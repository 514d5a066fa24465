//! Which unit roles a node serves over HTTP: `mu` (`POST /`, the Messenger's ingress), `su` (the
//! Scheduler's read API), `cu` (the Compute Unit's reads and dry-runs, and the hbu route) and `gateway`
//! (`/graphql` and the raw data routes). The node's own routes (`GET /`, health, metrics, evidence) are
//! always served. The embedded default is all four; a network CU is `cu` alone.

use std::fmt;
use std::str::FromStr;

/// The roles a node serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// The Messenger's ingress.
    pub mu: bool,
    /// The Scheduler's read API.
    pub su: bool,
    /// The Compute Unit's API.
    pub cu: bool,
    /// The gateway surface.
    pub gateway: bool,
}

impl Roles {
    /// Every role: the embedded local AO.
    pub const ALL: Roles = Roles {
        mu: true,
        su: true,
        cu: true,
        gateway: true,
    };
}

impl Default for Roles {
    fn default() -> Self {
        Roles::ALL
    }
}

impl FromStr for Roles {
    type Err = String;

    /// `all`, or a comma-separated list of `mu`, `su`, `cu`, `gateway`.
    fn from_str(s: &str) -> Result<Roles, String> {
        if s.trim() == "all" {
            return Ok(Roles::ALL);
        }
        let mut roles = Roles {
            mu: false,
            su: false,
            cu: false,
            gateway: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "mu" => roles.mu = true,
                "su" => roles.su = true,
                "cu" => roles.cu = true,
                "gateway" => roles.gateway = true,
                other => {
                    return Err(format!(
                        "unknown role {other:?} (expected all, or a list of mu, su, cu, gateway)"
                    ));
                }
            }
        }
        if roles
            == (Roles {
                mu: false,
                su: false,
                cu: false,
                gateway: false,
            })
        {
            return Err("no role given (expected all, or a list of mu, su, cu, gateway)".into());
        }
        Ok(roles)
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.mu, "mu"),
            (self.su, "su"),
            (self.cu, "cu"),
            (self.gateway, "gateway"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_print() {
        assert_eq!("all".parse::<Roles>().unwrap(), Roles::ALL);
        let cu: Roles = "cu".parse().unwrap();
        assert!(cu.cu && !cu.mu && !cu.su && !cu.gateway);
        assert_eq!(cu.to_string(), "cu");
        assert_eq!(
            " su , gateway".parse::<Roles>().unwrap().to_string(),
            "su,gateway"
        );
        assert!("cu,xx".parse::<Roles>().unwrap_err().contains("unknown role"));
        assert!("".parse::<Roles>().is_err());
    }
}
