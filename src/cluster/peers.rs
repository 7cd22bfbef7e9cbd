//! The owner of a key among the cluster's nodes: a Ketama ring (pingora's,
//! the one nginx uses) over the static peer list, so adding or removing a
//! node moves only that node's share of the keys.

use std::net::SocketAddr;

use pingora_ketama::{Bucket, Continuum};
use url::Url;

use crate::cache::Owners;
use crate::config::PeerConfig;
use crate::keys::CacheKey;
use crate::secret::Secret;

/// The ring and how to reach the other nodes.
pub struct Peers {
    ring: Continuum,
    me: SocketAddr,
    all: Vec<SocketAddr>,
    secret: Secret,
}

impl Peers {
    /// `None` without peers (or without this node among them, which the
    /// config check refuses).
    pub fn new(peers: &[PeerConfig], secret: Secret) -> Option<Peers> {
        let me = peers.iter().find(|p| p.me)?.addr;
        let buckets: Vec<Bucket> = peers.iter().map(|p| Bucket::new(p.addr, 1)).collect();
        Some(Peers {
            ring: Continuum::new(&buckets),
            me,
            all: peers.iter().map(|p| p.addr).collect(),
            secret,
        })
    }

    /// The node that owns `key`.
    pub fn owner_of(&self, key: &str) -> Option<SocketAddr> {
        self.ring.node(key.as_bytes())
    }
}

impl Owners for Peers {
    fn owner(&self, key: &CacheKey, url: &Url) -> Option<(Url, &str)> {
        let node = self.owner_of(key.as_str())?;
        if node == self.me {
            return None;
        }
        let mut ask = Url::parse(&format!("http://{node}/_cluster/fill")).ok()?;
        ask.query_pairs_mut()
            .append_pair("entry", key.as_str())
            .append_pair("url", url.as_str());
        Some((ask, self.secret.expose()))
    }

    fn others(&self) -> Vec<String> {
        (self.all.iter())
            .filter(|a| **a != self.me)
            .map(|a| format!("http://{a}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(addrs: &[&str]) -> Peers {
        let list: Vec<PeerConfig> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| PeerConfig {
                addr: a.parse().unwrap(),
                me: i == 0,
            })
            .collect();
        Peers::new(&list, Secret::list("s").remove(0)).unwrap()
    }

    /// Only the keys of a node that joins (or leaves) move, and the share
    /// of each node is roughly even.
    #[test]
    fn a_node_joining_moves_only_its_keys() {
        let three = peers(&["10.0.0.1:5000", "10.0.0.2:5000", "10.0.0.3:5000"]);
        let four = peers(&[
            "10.0.0.1:5000",
            "10.0.0.2:5000",
            "10.0.0.3:5000",
            "10.0.0.4:5000",
        ]);
        let new: SocketAddr = "10.0.0.4:5000".parse().unwrap();
        let keys: Vec<String> = (0..3000)
            .map(|i| format!("nuget/flat/p{i}/1.0.0/p{i}.1.0.0.nupkg"))
            .collect();
        let mut moved = 0;
        let mut per = std::collections::HashMap::new();
        for k in &keys {
            let (a, b) = (three.owner_of(k).unwrap(), four.owner_of(k).unwrap());
            if a != b {
                assert_eq!(b, new, "{k} moved between old nodes");
                moved += 1;
            }
            *per.entry(a).or_insert(0) += 1;
        }
        assert!(
            (500..1000).contains(&moved),
            "{moved} of 3000 moved to the 4th node"
        );
        assert!(per.values().all(|n| (700..1300).contains(n)), "{per:?}");
    }

    #[test]
    fn own_keys_stay_here_and_others_go_to_their_owner() {
        let p = peers(&["127.0.0.1:5001", "127.0.0.1:5002"]);
        let url =
            Url::parse("https://api.nuget.org/v3-flatcontainer/x/1.0.0/x.1.0.0.nupkg").unwrap();
        let (mut mine, mut theirs) = (0, 0);
        for i in 0..100 {
            let key = CacheKey::from(format!("nuget/flat/x{i}/1.0.0/x{i}.1.0.0.nupkg"));
            match p.owner(&key, &url) {
                None => mine += 1,
                Some((ask, secret)) => {
                    theirs += 1;
                    assert_eq!(ask.authority(), "127.0.0.1:5002");
                    assert_eq!(ask.path(), "/_cluster/fill");
                    assert!(ask.query().unwrap().contains("api.nuget.org"));
                    assert_eq!(secret, "s");
                }
            }
        }
        assert!(mine > 20 && theirs > 20, "{mine} / {theirs}");
    }
}
