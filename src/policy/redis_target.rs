//! Which Redis the state lives in and how to reach it: one server, a Redis Cluster given by some of
//! its nodes, or a master found through Redis Sentinel. The store above sees one connection type and
//! drops it on a connection fault; the next connection finds the current master again (a cluster's
//! client follows MOVED/ASK and failovers itself; Sentinel is asked afresh).

use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, ConnectionAddr, TlsMode};

use super::state::StateError;

/// A Sentinel deployment as the `state` URL gives it:
/// `redis+sentinel://[[user]:password@]host:port[,host:port…]/service[/db]`
/// (`rediss+sentinel://` for TLS to the Sentinels and the master). The credentials are the
/// master's; Sentinels are asked without.
#[derive(Debug, Clone, PartialEq)]
pub struct SentinelUrl {
    pub tls: bool,
    pub sentinels: Vec<(String, u16)>,
    pub service: String,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl SentinelUrl {
    /// `None` when `url` is not a Sentinel URL; an error naming what is wrong when it is one.
    pub fn parse(url: &str) -> Option<Result<SentinelUrl, String>> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else {
            (true, url.strip_prefix("rediss+sentinel://")?)
        };
        Some(Self::parse_rest(tls, rest))
    }

    fn parse_rest(tls: bool, rest: &str) -> Result<SentinelUrl, String> {
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        let (username, password) = match auth {
            None => (None, None),
            Some(auth) => match auth.split_once(':') {
                Some((user, pass)) => (
                    (!user.is_empty()).then(|| user.to_string()),
                    Some(pass.to_string()),
                ),
                None => (None, Some(auth.to_string())),
            },
        };
        let (hosts, path) = rest
            .split_once('/')
            .ok_or("no service name: redis+sentinel://host:port[,host:port…]/service[/db]")?;
        let sentinels = hosts
            .split(',')
            .map(|h| {
                let (host, port) = h
                    .trim()
                    .rsplit_once(':')
                    .ok_or_else(|| format!("sentinel {h:?} has no port"))?;
                let port = port
                    .parse()
                    .map_err(|_| format!("sentinel {h:?}: port is not a number"))?;
                Ok((host.to_string(), port))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let (service, db) = match path.split_once('/') {
            Some((service, db)) => (
                service,
                db.parse()
                    .map_err(|_| format!("database {db:?} is not a number"))?,
            ),
            None => (path, 0),
        };
        if service.is_empty() {
            return Err("the service name (the master's name in Sentinel) is empty".into());
        }
        Ok(SentinelUrl {
            tls,
            sentinels,
            service: service.to_string(),
            db,
            username,
            password,
        })
    }

    fn client(&self, ca: Option<&[u8]>) -> Result<SentinelClient, StateError> {
        let addrs = self.sentinels.iter().map(|(host, port)| match self.tls {
            false => ConnectionAddr::Tcp(host.clone(), *port),
            true => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            },
        });
        let mut builder =
            SentinelClientBuilder::new(addrs, self.service.clone(), SentinelServerType::Master)?
                .set_client_to_redis_db(self.db);
        if let Some(user) = &self.username {
            builder = builder.set_client_to_redis_username(user.clone());
        }
        if let Some(password) = &self.password {
            builder = builder.set_client_to_redis_password(password.clone());
        }
        if self.tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(ca) = ca {
                builder = builder
                    .set_client_to_redis_certificates(certificates(Some(ca)))
                    .set_client_to_sentinel_certificates(certificates(Some(ca)));
            }
        }
        Ok(builder.build()?)
    }
}

fn certificates(ca: Option<&[u8]>) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: None,
        root_cert: ca.map(<[u8]>::to_vec),
    }
}

/// One Redis, a Redis Cluster given by several of its nodes, or a Sentinel-managed master.
pub(super) enum Target {
    Single(redis::Client),
    Cluster(ClusterClient),
    /// Asked for the master at every (re)connection: after a failover the next connection reaches
    /// the promoted replica.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

impl Target {
    /// `redis://…` (or `rediss://…`) is one server; several separated by commas are the seed
    /// nodes of a cluster, which finds the rest itself and follows MOVED, ASK and failovers;
    /// `redis+sentinel://…/service` asks Sentinel for the service's master.
    /// `rediss` verifies the server against the system's roots, or against `ca` (PEM) if given.
    pub(super) fn open(
        url: &str,
        timeout: Duration,
        ca: Option<&[u8]>,
    ) -> Result<Target, StateError> {
        if let Some(sentinel) = SentinelUrl::parse(url) {
            let sentinel = sentinel.map_err(StateError::Config)?;
            return Ok(Target::Sentinel(tokio::sync::Mutex::new(
                sentinel.client(ca)?,
            )));
        }
        if !url.contains(',') {
            return Ok(Target::Single(match ca {
                Some(_) => redis::Client::build_with_tls(url, certificates(ca))?,
                None => redis::Client::open(url)?,
            }));
        }
        let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
        let mut builder = ClusterClient::builder(nodes);
        if ca.is_some() {
            builder = builder.certs(certificates(ca));
        }
        let client = builder
            .connection_timeout(timeout)
            .response_timeout(timeout)
            // A retry within the call's deadline, for a redirect during a failover.
            .retries(2)
            .min_retry_wait(10)
            .max_retry_wait(100)
            .build()?;
        Ok(Target::Cluster(client))
    }

    pub(super) async fn connect(&self, timeout: Duration) -> Result<Connection, StateError> {
        Ok(match self {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout)
                    // One attempt: a refused connection fails the probe at once instead of waiting
                    // out a reconnect backoff (which would take the caller's whole deadline); a
                    // connection fault drops this manager, so the next probe connects afresh.
                    .set_number_of_retries(0);
                Connection::Single(client.get_connection_manager_with_config(config).await?)
            }
            Target::Cluster(client) => Connection::Cluster(client.get_async_connection().await?),
            Target::Sentinel(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout);
                let mut client = client.lock().await;
                Connection::Sentinel(client.get_async_connection_with_config(&config).await?)
            }
        })
    }
}

/// A connection to any of them; cheap to clone (each multiplexes one connection per node).
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(MultiplexedConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
            Connection::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
            Connection::Sentinel(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_the_sentinels_the_service_and_the_masters_credentials() {
        assert_eq!(SentinelUrl::parse("redis://localhost:6379"), None);
        let url = SentinelUrl::parse(
            "redis+sentinel://:s3cret@10.0.0.1:26379,sentinel-2:26380/mymaster/2",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            url,
            SentinelUrl {
                tls: false,
                sentinels: vec![("10.0.0.1".into(), 26379), ("sentinel-2".into(), 26380)],
                service: "mymaster".into(),
                db: 2,
                username: None,
                password: Some("s3cret".into()),
            }
        );
        let tls = SentinelUrl::parse("rediss+sentinel://app:pw@s:26379/cache")
            .unwrap()
            .unwrap();
        assert!(tls.tls);
        assert_eq!(tls.username.as_deref(), Some("app"));
        assert_eq!(tls.db, 0);
        for (bad, says) in [
            ("redis+sentinel://s:26379", "no service name"),
            ("redis+sentinel://s/mymaster", "has no port"),
            ("redis+sentinel://s:x/mymaster", "not a number"),
            ("redis+sentinel://s:26379/", "service name"),
            ("redis+sentinel://s:26379/m/x", "database"),
        ] {
            let err = SentinelUrl::parse(bad).unwrap().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
