//! Bounds on the transport's connections, as libp2p behaviours.
//!
//! | bound | value | at the bound |
//! |---|---|---|
//! | inbound connections being set up (before Noise finishes) | [`PENDING_INBOUND_MAX`] | a new one is refused |
//! | established inbound connections | [`ESTABLISHED_INBOUND_MAX`] | a new one is refused |
//! | connections per peer | [`PER_PEER_MAX`] | a new one is refused |
//! | inbound connections per remote IP, pending and established | [`PER_IP_MAX`] | a new one is refused before its handshake |
//!
//! The first three are libp2p's own `connection_limits`; the per-IP count, which
//! libp2p does not have, is [`PerIp`] here. Peers not on the allowlist are refused
//! after the handshake by `allow_block_list`; these bounds keep a flood of
//! handshakes (from anyone, admitted or not) from exhausting file descriptors.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::multiaddr::Protocol;
use libp2p::core::transport::PortUse;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure, NetworkBehaviour,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId, connection_limits};

/// Inbound connections mid-handshake at most.
pub const PENDING_INBOUND_MAX: u32 = 64;
/// Established inbound connections at most.
pub const ESTABLISHED_INBOUND_MAX: u32 = 512;
/// Connections to one peer at most (a redial may briefly overlap an old one).
pub const PER_PEER_MAX: u32 = 4;
/// Inbound connections from one IP address at most, pending and established.
pub const PER_IP_MAX: usize = 16;

/// libp2p's global and per-peer limits, with the values above.
pub fn global() -> connection_limits::Behaviour {
    connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(PENDING_INBOUND_MAX))
            .with_max_established_incoming(Some(ESTABLISHED_INBOUND_MAX))
            .with_max_established_per_peer(Some(PER_PEER_MAX)),
    )
}

/// The remote IP of a multiaddr, if it has one.
fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// The inbound connection count of an IP address was at [`PER_IP_MAX`].
#[derive(Debug, thiserror::Error)]
#[error("{ip} has {PER_IP_MAX} inbound connections already")]
pub struct TooManyFromIp {
    /// The address.
    pub ip: IpAddr,
}

/// Caps inbound connections per remote IP address.
#[derive(Debug)]
pub struct PerIp {
    max: usize,
    /// Which IP each counted inbound connection came from.
    connections: BTreeMap<ConnectionId, IpAddr>,
    /// How many counted connections each IP has.
    per_ip: BTreeMap<IpAddr, usize>,
}

impl PerIp {
    /// At most `max` inbound connections per IP.
    pub fn new(max: usize) -> Self {
        PerIp {
            max,
            connections: BTreeMap::new(),
            per_ip: BTreeMap::new(),
        }
    }

    fn forget(&mut self, id: ConnectionId) {
        if let Some(ip) = self.connections.remove(&id)
            && let Some(n) = self.per_ip.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Counts an inbound connection from `remote`, or refuses it.
    pub fn admit(&mut self, id: ConnectionId, remote: &Multiaddr) -> Result<(), TooManyFromIp> {
        let Some(ip) = ip_of(remote) else {
            return Ok(());
        };
        let n = self.per_ip.entry(ip).or_default();
        if *n >= self.max {
            return Err(TooManyFromIp { ip });
        }
        *n += 1;
        self.connections.insert(id, ip);
        Ok(())
    }

    /// Connections counted now.
    #[cfg(test)]
    pub fn counted(&self) -> usize {
        self.connections.len()
    }
}

impl NetworkBehaviour for PerIp {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.admit(connection_id, remote_addr)
            .map_err(ConnectionDenied::new)
    }

    fn handle_established_inbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. })
            | FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.forget(connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_ip_gets_at_most_max_and_a_closed_connection_frees_its_slot() {
        let mut limit = PerIp::new(2);
        let a: Multiaddr = "/ip4/10.0.0.1/tcp/4000".parse().unwrap();
        let b: Multiaddr = "/ip4/10.0.0.2/tcp/4000".parse().unwrap();
        let ids: Vec<ConnectionId> = (0..5).map(ConnectionId::new_unchecked).collect();
        assert!(limit.admit(ids[0], &a).is_ok());
        assert!(limit.admit(ids[1], &a).is_ok());
        assert!(
            limit.admit(ids[2], &a).is_err(),
            "a third from one IP is refused"
        );
        assert!(
            limit.admit(ids[3], &b).is_ok(),
            "another IP is counted apart"
        );
        limit.forget(ids[0]);
        assert!(
            limit.admit(ids[4], &a).is_ok(),
            "a closed connection frees its slot"
        );
        assert_eq!(limit.counted(), 3, "ids 1, 3 and 4 are open");
    }
}
